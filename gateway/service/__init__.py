"""The service layer: the query and action functions an operator's interface calls.

Both interfaces, the command line (:mod:`gateway.cli`) and the web console
(:mod:`gateway.console`), call these functions and only format what they return, so a
search, a message's timeline or a resend means the same thing in both (no second copy of
the logic). Values in, values out: the caller opens the node (:mod:`.context`), passes
the clock and the operator's name, and prints or renders the result.

- :mod:`.context`: the node's configuration, spool and audit trail, opened once.
- :mod:`.messages`: search with filters, sorting and paging; a message's detail
  (timeline, attempts, receipts, route, next attempt); resend and cancel with a reason.
- :mod:`.audit`: list, show, verify and export the audit trail; receipt checks.
- :mod:`.status`: counts, partner health and certificates.
- :mod:`.partners`: ping a partner over each of its transports.
- :mod:`.clocks`: deadline clocks (open, overdue, filtered), the rules, the summary.
"""
