"""The wire: typed protocol values <-> `accord.v1` messages, each message's pair once.

One module per message family, each holding both directions of its messages, so that
what one role writes and what the other reads are side by side:

- `stages`: round stages, the stage shown outside a round, protection profiles.
- `headers`: the request header every participant request carries (`Header`).
- `round_config`: the round config and its client-level noise setting.
- `keys`: key advertisements, sealed shares and unmask shares (the participant's round
  messages and their relays).
- `evidence`: the signed survivor set and the signatures over it.
- `tasks`: the task `NextTask` answers with (`Assignment`) and its per-stage payloads,
  the aggregate notice and the "aggregate applied" receipt.
- `ceremony`: the key ceremony's post and bundle, and the ceremony key of an enrolment.
- `enrol`: the roster an Enroll response lists.
- `status`: the federation's status and its round summaries (`Status`, `RoundRecord`).

Stage and profile enums convert by name: `accord.crypto` and `accord.v1` spell every
member alike (`UPLOAD`, `CKKS_MASKS`), so no second table can drift. Both roles import
this package; nothing in `accord.crypto`, `accord.proto` or `accord.core` does.
"""
