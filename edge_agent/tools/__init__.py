"""The operator's tools on the gateway: ``edgehouse-agent db …`` and ``edgehouse-agent dead-letters …``.

Built on sqlite-utils, run as their own short-lived process next to (or instead of) a running
agent; the daemon never imports them. See ``edge_agent/README.md`` "Operator tools".
"""
