"""Calls the tests' raw-bytes echo service (test/helpers/echo-service.ts) with
gRPC's C core (Debian's python3-grpcio), a client this project did not write,
and prints one JSON object per scenario on stdout for the Node test to check.

Usage: echo_client.py ADDRESS [AGENT]   (AGENT: sent as grpctunnel-agent)
"""

import base64
import json
import sys

import grpc

address = sys.argv[1]
agent = sys.argv[2] if len(sys.argv) > 2 else None
routing = [("grpctunnel-agent", agent)] if agent else []


def b64(data):
    return base64.b64encode(data).decode("ascii")


def md(pairs):
    """Metadata as [key, value] pairs, -bin values base64 so JSON can hold them."""
    out = []
    for key, value in pairs or ():
        out.append([key, b64(value) if isinstance(value, bytes) else value])
    return out


def rpc_error(err):
    return {"code": err.code().name, "details": err.details(), "trailers": md(err.trailing_metadata())}


def report(name, **fields):
    print(json.dumps({"scenario": name, **fields}), flush=True)


channel = grpc.insecure_channel(address)
grpc.channel_ready_future(channel).result(timeout=10)
unary = channel.unary_unary("/test.Echo/Unary")
client_stream = channel.stream_unary("/test.Echo/ClientStream")
server_stream = channel.unary_stream("/test.Echo/ServerStream")
bidi = channel.stream_stream("/test.Echo/Bidi")

# Unary with text and binary metadata; response headers and trailers come back.
response, call = unary.with_call(
    b"hello from grpcio",
    metadata=routing + [("x-echo-text", "v1"), ("x-echo-blob-bin", b"\x00\x01\xfe\xff"), ("x-trailer-t", "tv")],
    timeout=10,
)
report(
    "unary",
    response=b64(response),
    headers=md(call.initial_metadata()),
    trailers=md(call.trailing_metadata()),
    code=call.code().name,
)

# Client streaming: sizes 0, 1 and 70,000 bytes (more than one tunnel chunk).
response = client_stream(iter([b"", b"x", b"y" * 70_000]), metadata=routing, timeout=10)
report("client-stream", response=response.decode())

# Server streaming: five 100,000-byte messages.
replies = list(server_stream(json.dumps({"count": 5, "size": 100_000}).encode(), metadata=routing, timeout=10))
report("server-stream", sizes=[len(r) for r in replies], firsts=[r[0] for r in replies])

# Bidi: ten messages echoed in order.
sent = [f"m{i}".encode() * (i + 1) for i in range(10)]
replies = list(bidi(iter(sent), metadata=routing, timeout=10))
report("bidi", same=[r == s for r, s in zip(replies, sent)], count=len(replies))

# An error with a message that needs percent-encoding and binary details.
DETAILS = b"\x08\x05\x12\x07nothing\xff\x00"
try:
    unary(
        b"x",
        metadata=routing
        + [
            ("x-status-code", "5"),
            ("x-status-message-bin", " not found: 100% gone, caf\u00e9 \u2603 ".encode()),
            ("x-status-details-bin", DETAILS),
        ],
        timeout=10,
    )
    report("error", code="OK")
except grpc.RpcError as err:
    report("error", **rpc_error(err), expected_details_bin=b64(DETAILS))

# A deadline shorter than the handler's delay.
try:
    unary(b"x", metadata=routing + [("x-delay-ms", "5000")], timeout=0.3)
    report("deadline", code="OK")
except grpc.RpcError as err:
    report("deadline", code=err.code().name)

# Cancellation of a server stream the handler has not started writing.
call = server_stream(json.dumps({"count": 1, "size": 1}).encode(), metadata=routing + [("x-delay-ms", "10000")])
call.initial_metadata()  # the handler has started: its headers arrived
call.cancel()
try:
    list(call)
    report("cancel", code="OK")
except grpc.RpcError as err:
    report("cancel", code=err.code().name)

channel.close()
