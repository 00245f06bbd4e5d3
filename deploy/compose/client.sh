#!/bin/sh
# The `client` service of docker-compose.yml: example calls through the gateway, signed
# with `curl --aws-sigv4` exactly as a PBC would sign them, each checked against the
# status (and AWS error code) it must get. Exits 1 if any call gets something else.
#
#   docker compose run --rm client
#
# It runs in curlimages/curl (POSIX sh, no bash). The keys are the documented demo keys
# of deploy/compose/credentials.toml: development only.
set -eu

gateway="${GATEWAY_URL:-https://gateway:8443}"
ca="${GATEWAY_CA:-/var/lib/sigv4-gateway/certs/ca.pem}"
sigv4="aws:amz:eu-west-1:execute-api"

checkout="AKIADEMOCHECKOUT0001:demo+checkout+secret+key+not+for+production"
catalogue="AKIADEMOCATALOGUE001:demo+catalogue+secret+key+not+for+production"

# Compose starts this service once the gateway is healthy; wait anyway (up to 60 s), so
# the script also works when run by hand against a gateway that is still starting.
tries=0
until curl -s -o /dev/null --cacert "$ca" "$gateway/"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "client: the gateway at $gateway does not answer" >&2
        exit 1
    fi
    sleep 1
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0

# check DESCRIPTION EXPECTED_STATUS EXPECTED_ERROR_CODE|- CURL_ARGS...
check() {
    description="$1"
    want_status="$2"
    want_code="$3"
    shift 3
    status="$(curl -sS --cacert "$ca" -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' "$@")" || status="000"
    code="$(sed -n 's/^[Xx]-[Aa]mzn-[Ee]rror[Tt]ype:[[:space:]]*\([A-Za-z0-9]*\).*/\1/p' "$tmp/headers" | head -n 1)"
    [ -n "$code" ] || code="-"
    if [ "$status" = "$want_status" ] && [ "$code" = "$want_code" ]; then
        verdict="ok  "
    else
        verdict="FAIL"
        failures=$((failures + 1))
    fi
    printf '%s %-52s -> %s %s (expected %s %s)\n' "$verdict" "$description" "$status" "$code" "$want_status" "$want_code"
    # What the upstream saw (the identity assertion it verified), or the gateway's error.
    printf '       %s\n' "$(head -c 400 "$tmp/body")"
}

check "checkout  GET    /order/orders/42 (allowed)" 200 - \
    --aws-sigv4 "$sigv4" --user "$checkout" "$gateway/order/orders/42"
check "catalogue GET    /order/orders/42 (no rule allows)" 403 AccessDenied \
    --aws-sigv4 "$sigv4" --user "$catalogue" "$gateway/order/orders/42"
check "checkout  DELETE /order/orders/42 (explicit deny)" 403 AccessDenied \
    --aws-sigv4 "$sigv4" --user "$checkout" -X DELETE "$gateway/order/orders/42"
check "unsigned  GET    /order/orders/42" 403 MissingAuthenticationToken \
    "$gateway/order/orders/42"

if [ "$failures" -gt 0 ]; then
    echo "client: $failures call(s) did not get the expected answer" >&2
    exit 1
fi
echo "client: all calls got the expected answer"
