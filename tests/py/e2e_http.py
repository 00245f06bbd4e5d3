"""Sending a request and reporting the answer, for the scripts beside this file.

Plain urllib from the standard library: whatever signed the request (botocore here),
the bytes on the wire are exactly the URL, headers and body given. Each answer is a
dict the Rust tests read: {"status": 200, "headers": {...}, "body": "..."}.
"""
import ssl
import urllib.error
import urllib.request


def send(method, url, headers, body, ca):
    """Sends the request over TLS trusting only `ca`; returns the answer, errors included."""
    context = ssl.create_default_context(cafile=ca)
    request = urllib.request.Request(url, data=body or None, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return answer(error.code, error.headers, error.read())


def answer(status, headers, body):
    return {
        "status": status,
        "headers": {name.lower(): value for name, value in headers.items()},
        "body": body.decode("utf-8", "replace"),
    }
