"""boto3's STS client against the gateway's STS (run by tests/boto3_sts.rs).

argv: GATEWAY_URL CA_PEM. boto3 talks to `<gateway>/sts` exactly as to AWS STS, with
only the endpoint URL and the CA bundle changed. Prints one JSON object; the Rust test
asserts on it and on the gateway's audit log.
"""
import json
import sys

import boto3
import botocore.exceptions

gateway, ca = sys.argv[1], sys.argv[2]
ROLE = "arn:aws:iam::111122223333:role/CheckoutToOrderRole"
out = {}


def sts(key, secret, token=None):
    return boto3.client(
        "sts",
        endpoint_url=gateway + "/sts",
        region_name="eu-west-1",
        verify=ca,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def error(call):
    """The AWS error of a call that must fail: code, HTTP status and request id."""
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return {
            "code": e.response["Error"]["Code"],
            "message": e.response["Error"].get("Message", ""),
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
            "request_id": e.response["ResponseMetadata"].get("RequestId", ""),
        }
    return {"code": "no error"}


checkout = sts("AKIADEMOCHECKOUT0001", "demo+checkout+secret+key+not+for+production")
me = checkout.get_caller_identity()
out["static_identity"] = {"arn": me["Arn"], "account": me["Account"]}

# Allowed: checkout assumes the role.
r = checkout.assume_role(RoleArn=ROLE, RoleSessionName="boto3-session", DurationSeconds=900)
c = r["Credentials"]
out["assumed"] = {
    "arn": r["AssumedRoleUser"]["Arn"],
    "access_key_id": c["AccessKeyId"],
    "has_secret": bool(c["SecretAccessKey"]),
    "has_token": bool(c["SessionToken"]),
    "expiration": c["Expiration"].isoformat(),
    "request_id": r["ResponseMetadata"]["RequestId"],
}

# The issued credentials work: GetCallerIdentity names the session.
session = sts(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
me = session.get_caller_identity()
out["session_identity"] = {"arn": me["Arn"], "user_id": me["UserId"]}

# Denied: the role's trust policy does not name catalogue.
catalogue = sts("AKIADEMOCATALOGUE001", "demo+catalogue+secret+key+not+for+production")
out["denied"] = error(lambda: catalogue.assume_role(RoleArn=ROLE, RoleSessionName="boto3-catalogue"))

# Tampered: checkout's key signed with a wrong secret.
forged = sts("AKIADEMOCHECKOUT0001", "not+the+checkout+secret+at+all")
out["wrong_secret"] = error(lambda: forged.assume_role(RoleArn=ROLE, RoleSessionName="boto3-forged"))

# Tampered: the session token with one character changed.
token = c["SessionToken"]
i = len(token) // 2
altered = token[:i] + ("B" if token[i] == "A" else "A") + token[i + 1:]
out["tampered_token"] = error(lambda: sts(c["AccessKeyId"], c["SecretAccessKey"], altered).get_caller_identity())

print(json.dumps(out))
