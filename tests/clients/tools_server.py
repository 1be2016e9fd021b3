"""A minimal stdio MCP server without an SDK, for tests that need tools shaped a certain way.

usage: python3 tools_server.py SPEC_JSON

SPEC_JSON is an object: `serverInfo` (reported by `initialize`), optional `instructions`,
`tools` (the `tools/list` result), and `call`: "ok" answers every `tools/call` with the text
`ok`, "arguments" with the JSON of the call's arguments. `ping` is answered, every other
request gets -32601; notifications and lines that are not JSON are ignored.
"""

import json
import sys


def main(spec):
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
            continue
        method = msg["method"]
        params = msg.get("params") or {}
        if method == "initialize":
            result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                      "capabilities": {"tools": {}},
                      "serverInfo": spec["serverInfo"]}
            if "instructions" in spec:
                result["instructions"] = spec["instructions"]
        elif method == "tools/list":
            result = {"tools": spec["tools"]}
        elif method == "tools/call":
            text = "ok" if spec["call"] == "ok" else json.dumps(params.get("arguments"))
            result = {"content": [{"type": "text", "text": text}]}
        elif method == "ping":
            result = {}
        else:
            print(json.dumps({"jsonrpc": "2.0", "id": msg["id"],
                              "error": {"code": -32601, "message": "Method not found"}}),
                  flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)


main(json.loads(sys.argv[1]))
