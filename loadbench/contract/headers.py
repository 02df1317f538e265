"""HTTP header values shared by the clients and the embedded simulator (part of the contract)."""

# Every request carries its loadbench id in this header, so a server's own trace (the simulator's
# ground truth, a proxy log) can be joined to the client's records.
REQUEST_ID_HEADER = "X-Loadbench-Request-Id"

USER_AGENT = "loadbench"
