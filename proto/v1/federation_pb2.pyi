from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    ENROLL: _ClassVar[Stage]
    KEY_CEREMONY: _ClassVar[Stage]
    ADVERTISE: _ClassVar[Stage]
    SHARE: _ClassVar[Stage]
    UPLOAD: _ClassVar[Stage]
    UNMASK: _ClassVar[Stage]
    AGGREGATE: _ClassVar[Stage]
    DONE: _ClassVar[Stage]
    ABORTED: _ClassVar[Stage]
    IDLE: _ClassVar[Stage]
    CONSISTENCY: _ClassVar[Stage]
    FEDERATION_FINISHED: _ClassVar[Stage]

class Profile(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROFILE_UNSPECIFIED: _ClassVar[Profile]
    CKKS_MASKS: _ClassVar[Profile]
    CKKS: _ClassVar[Profile]
    MASKS: _ClassVar[Profile]
    NONE: _ClassVar[Profile]
STAGE_UNSPECIFIED: Stage
ENROLL: Stage
KEY_CEREMONY: Stage
ADVERTISE: Stage
SHARE: Stage
UPLOAD: Stage
UNMASK: Stage
AGGREGATE: Stage
DONE: Stage
ABORTED: Stage
IDLE: Stage
CONSISTENCY: Stage
FEDERATION_FINISHED: Stage
PROFILE_UNSPECIFIED: Profile
CKKS_MASKS: Profile
CKKS: Profile
MASKS: Profile
NONE: Profile

class RequestHeader(_message.Message):
    __slots__ = ("federation_id", "round", "stage", "participant_id", "sequence", "signature")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    round: int
    stage: Stage
    participant_id: str
    sequence: int
    signature: bytes
    def __init__(self, federation_id: _Optional[str] = ..., round: _Optional[int] = ..., stage: _Optional[_Union[Stage, str]] = ..., participant_id: _Optional[str] = ..., sequence: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("header", "base_model_hash", "ceremony_public_key", "software_version", "adapter_parameters", "ceremony_key_signature")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    CEREMONY_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CEREMONY_KEY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    base_model_hash: str
    ceremony_public_key: bytes
    software_version: str
    adapter_parameters: int
    ceremony_key_signature: bytes
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., base_model_hash: _Optional[str] = ..., ceremony_public_key: _Optional[bytes] = ..., software_version: _Optional[str] = ..., adapter_parameters: _Optional[int] = ..., ceremony_key_signature: _Optional[bytes] = ...) -> None: ...

class RosterEntry(_message.Message):
    __slots__ = ("participant_id", "identity_public_key", "ceremony_public_key", "ceremony_key_signature", "certificate")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CEREMONY_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CEREMONY_KEY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    identity_public_key: bytes
    ceremony_public_key: bytes
    ceremony_key_signature: bytes
    certificate: bytes
    def __init__(self, participant_id: _Optional[str] = ..., identity_public_key: _Optional[bytes] = ..., ceremony_public_key: _Optional[bytes] = ..., ceremony_key_signature: _Optional[bytes] = ..., certificate: _Optional[bytes] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("federation_id", "current_round", "profile", "roster", "heartbeat_interval_s")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ROUND_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    current_round: int
    profile: Profile
    roster: _containers.RepeatedCompositeFieldContainer[RosterEntry]
    heartbeat_interval_s: float
    def __init__(self, federation_id: _Optional[str] = ..., current_round: _Optional[int] = ..., profile: _Optional[_Union[Profile, str]] = ..., roster: _Optional[_Iterable[_Union[RosterEntry, _Mapping]]] = ..., heartbeat_interval_s: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("header", "state")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    state: str
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., state: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("current_round", "stage")
    CURRENT_ROUND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    current_round: int
    stage: Stage
    def __init__(self, current_round: _Optional[int] = ..., stage: _Optional[_Union[Stage, str]] = ...) -> None: ...

class SealedSecret(_message.Message):
    __slots__ = ("recipient_id", "envelope", "signature")
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    recipient_id: str
    envelope: bytes
    signature: bytes
    def __init__(self, recipient_id: _Optional[str] = ..., envelope: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class CeremonyPost(_message.Message):
    __slots__ = ("header", "key_epoch", "public_context", "secrets")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    key_epoch: int
    public_context: bytes
    secrets: _containers.RepeatedCompositeFieldContainer[SealedSecret]
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., key_epoch: _Optional[int] = ..., public_context: _Optional[bytes] = ..., secrets: _Optional[_Iterable[_Union[SealedSecret, _Mapping]]] = ...) -> None: ...

class CeremonyRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ...) -> None: ...

class CeremonyBundle(_message.Message):
    __slots__ = ("key_epoch", "maker_id", "public_context", "sealed_secret", "ready", "signature")
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    MAKER_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEALED_SECRET_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    key_epoch: int
    maker_id: str
    public_context: bytes
    sealed_secret: bytes
    ready: bool
    signature: bytes
    def __init__(self, key_epoch: _Optional[int] = ..., maker_id: _Optional[str] = ..., public_context: _Optional[bytes] = ..., sealed_secret: _Optional[bytes] = ..., ready: _Optional[bool] = ..., signature: _Optional[bytes] = ...) -> None: ...

class RoundConfig(_message.Message):
    __slots__ = ("round", "profile", "selected", "threshold", "neighbour_degree", "graph_seed", "modulus_bits", "max_participants", "clip_norm", "value_bound", "weight_cap", "fields_per_real", "field_bits", "scale_bits", "poly_modulus_degree", "key_epoch", "element_count", "stage_deadline_s", "client_noise")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOUR_DEGREE_FIELD_NUMBER: _ClassVar[int]
    GRAPH_SEED_FIELD_NUMBER: _ClassVar[int]
    MODULUS_BITS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    VALUE_BOUND_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_CAP_FIELD_NUMBER: _ClassVar[int]
    FIELDS_PER_REAL_FIELD_NUMBER: _ClassVar[int]
    FIELD_BITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    POLY_MODULUS_DEGREE_FIELD_NUMBER: _ClassVar[int]
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ELEMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    STAGE_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NOISE_FIELD_NUMBER: _ClassVar[int]
    round: int
    profile: Profile
    selected: _containers.RepeatedScalarFieldContainer[str]
    threshold: int
    neighbour_degree: int
    graph_seed: bytes
    modulus_bits: int
    max_participants: int
    clip_norm: float
    value_bound: float
    weight_cap: int
    fields_per_real: int
    field_bits: int
    scale_bits: int
    poly_modulus_degree: int
    key_epoch: int
    element_count: int
    stage_deadline_s: float
    client_noise: ClientNoise
    def __init__(self, round: _Optional[int] = ..., profile: _Optional[_Union[Profile, str]] = ..., selected: _Optional[_Iterable[str]] = ..., threshold: _Optional[int] = ..., neighbour_degree: _Optional[int] = ..., graph_seed: _Optional[bytes] = ..., modulus_bits: _Optional[int] = ..., max_participants: _Optional[int] = ..., clip_norm: _Optional[float] = ..., value_bound: _Optional[float] = ..., weight_cap: _Optional[int] = ..., fields_per_real: _Optional[int] = ..., field_bits: _Optional[int] = ..., scale_bits: _Optional[int] = ..., poly_modulus_degree: _Optional[int] = ..., key_epoch: _Optional[int] = ..., element_count: _Optional[int] = ..., stage_deadline_s: _Optional[float] = ..., client_noise: _Optional[_Union[ClientNoise, _Mapping]] = ...) -> None: ...

class ClientNoise(_message.Message):
    __slots__ = ("noise_multiplier", "honest_fraction", "delta")
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    HONEST_FRACTION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    noise_multiplier: float
    honest_fraction: float
    delta: float
    def __init__(self, noise_multiplier: _Optional[float] = ..., honest_fraction: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class SignedKeys(_message.Message):
    __slots__ = ("participant_id", "encryption_public_key", "masking_public_key", "signature", "sequence")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    MASKING_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    encryption_public_key: bytes
    masking_public_key: bytes
    signature: bytes
    sequence: int
    def __init__(self, participant_id: _Optional[str] = ..., encryption_public_key: _Optional[bytes] = ..., masking_public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., sequence: _Optional[int] = ...) -> None: ...

class SealedShare(_message.Message):
    __slots__ = ("sender_id", "recipient_id", "envelope")
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    sender_id: str
    recipient_id: str
    envelope: bytes
    def __init__(self, sender_id: _Optional[str] = ..., recipient_id: _Optional[str] = ..., envelope: _Optional[bytes] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("header", "wait_s")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    wait_s: float
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., wait_s: _Optional[float] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("stage", "config", "neighbour_keys", "shares", "survivors", "dropped", "message", "ceremony_keys", "key_epoch", "ledger_head", "ledger_public_key", "evidence", "revocation_list")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOUR_KEYS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CEREMONY_KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEDGER_HEAD_FIELD_NUMBER: _ClassVar[int]
    LEDGER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_LIST_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    config: RoundConfig
    neighbour_keys: _containers.RepeatedCompositeFieldContainer[SignedKeys]
    shares: _containers.RepeatedCompositeFieldContainer[SealedShare]
    survivors: _containers.RepeatedScalarFieldContainer[str]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    message: str
    ceremony_keys: _containers.RepeatedCompositeFieldContainer[RosterEntry]
    key_epoch: int
    ledger_head: bytes
    ledger_public_key: bytes
    evidence: SurvivorEvidence
    revocation_list: bytes
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., config: _Optional[_Union[RoundConfig, _Mapping]] = ..., neighbour_keys: _Optional[_Iterable[_Union[SignedKeys, _Mapping]]] = ..., shares: _Optional[_Iterable[_Union[SealedShare, _Mapping]]] = ..., survivors: _Optional[_Iterable[str]] = ..., dropped: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., ceremony_keys: _Optional[_Iterable[_Union[RosterEntry, _Mapping]]] = ..., key_epoch: _Optional[int] = ..., ledger_head: _Optional[bytes] = ..., ledger_public_key: _Optional[bytes] = ..., evidence: _Optional[_Union[SurvivorEvidence, _Mapping]] = ..., revocation_list: _Optional[bytes] = ...) -> None: ...

class UploadCommitment(_message.Message):
    __slots__ = ("participant_id", "digest", "chunk_count", "sequence", "signature")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    digest: bytes
    chunk_count: int
    sequence: int
    signature: bytes
    def __init__(self, participant_id: _Optional[str] = ..., digest: _Optional[bytes] = ..., chunk_count: _Optional[int] = ..., sequence: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SurvivorSignature(_message.Message):
    __slots__ = ("participant_id", "statement", "sequence", "signature")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    statement: bytes
    sequence: int
    signature: bytes
    def __init__(self, participant_id: _Optional[str] = ..., statement: _Optional[bytes] = ..., sequence: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SurvivorEvidence(_message.Message):
    __slots__ = ("survivors", "dropped", "commitments", "signatures")
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    COMMITMENTS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    survivors: _containers.RepeatedScalarFieldContainer[str]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    commitments: _containers.RepeatedCompositeFieldContainer[UploadCommitment]
    signatures: _containers.RepeatedCompositeFieldContainer[SurvivorSignature]
    def __init__(self, survivors: _Optional[_Iterable[str]] = ..., dropped: _Optional[_Iterable[str]] = ..., commitments: _Optional[_Iterable[_Union[UploadCommitment, _Mapping]]] = ..., signatures: _Optional[_Iterable[_Union[SurvivorSignature, _Mapping]]] = ...) -> None: ...

class ConsistencyRequest(_message.Message):
    __slots__ = ("header", "statement")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    statement: bytes
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., statement: _Optional[bytes] = ...) -> None: ...

class AdvertiseKeysRequest(_message.Message):
    __slots__ = ("header", "keys")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    keys: SignedKeys
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., keys: _Optional[_Union[SignedKeys, _Mapping]] = ...) -> None: ...

class ShareKeysRequest(_message.Message):
    __slots__ = ("header", "shares")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    shares: _containers.RepeatedCompositeFieldContainer[SealedShare]
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., shares: _Optional[_Iterable[_Union[SealedShare, _Mapping]]] = ...) -> None: ...

class UpdateChunk(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadReceipt(_message.Message):
    __slots__ = ("chunks", "bytes", "digest")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    chunks: int
    bytes: int
    digest: bytes
    def __init__(self, chunks: _Optional[int] = ..., bytes: _Optional[int] = ..., digest: _Optional[bytes] = ...) -> None: ...

class Share(_message.Message):
    __slots__ = ("owner_id", "share")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    share: bytes
    def __init__(self, owner_id: _Optional[str] = ..., share: _Optional[bytes] = ...) -> None: ...

class UnmaskRequest(_message.Message):
    __slots__ = ("header", "self_mask_shares", "masking_key_shares")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SELF_MASK_SHARES_FIELD_NUMBER: _ClassVar[int]
    MASKING_KEY_SHARES_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    self_mask_shares: _containers.RepeatedCompositeFieldContainer[Share]
    masking_key_shares: _containers.RepeatedCompositeFieldContainer[Share]
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., self_mask_shares: _Optional[_Iterable[_Union[Share, _Mapping]]] = ..., masking_key_shares: _Optional[_Iterable[_Union[Share, _Mapping]]] = ...) -> None: ...

class AggregateRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ...) -> None: ...

class AggregateApplied(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ...) -> None: ...

class AggregateChunk(_message.Message):
    __slots__ = ("chunk", "config", "evidence")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    config: RoundConfig
    evidence: SurvivorEvidence
    def __init__(self, chunk: _Optional[bytes] = ..., config: _Optional[_Union[RoundConfig, _Mapping]] = ..., evidence: _Optional[_Union[SurvivorEvidence, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ParticipantStatus(_message.Message):
    __slots__ = ("participant_id", "online", "state", "bytes_up", "bytes_down")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_UP_FIELD_NUMBER: _ClassVar[int]
    BYTES_DOWN_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    online: bool
    state: str
    bytes_up: int
    bytes_down: int
    def __init__(self, participant_id: _Optional[str] = ..., online: _Optional[bool] = ..., state: _Optional[str] = ..., bytes_up: _Optional[int] = ..., bytes_down: _Optional[int] = ...) -> None: ...

class RoundSummary(_message.Message):
    __slots__ = ("round", "outcome", "duration_s", "stage_durations_s", "survivors", "bytes_up", "bytes_down", "message", "selected")
    class StageDurationsSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class BytesUpEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class BytesDownEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    STAGE_DURATIONS_S_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    BYTES_UP_FIELD_NUMBER: _ClassVar[int]
    BYTES_DOWN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    round: int
    outcome: Stage
    duration_s: float
    stage_durations_s: _containers.ScalarMap[str, float]
    survivors: _containers.RepeatedScalarFieldContainer[str]
    bytes_up: _containers.ScalarMap[str, int]
    bytes_down: _containers.ScalarMap[str, int]
    message: str
    selected: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, round: _Optional[int] = ..., outcome: _Optional[_Union[Stage, str]] = ..., duration_s: _Optional[float] = ..., stage_durations_s: _Optional[_Mapping[str, float]] = ..., survivors: _Optional[_Iterable[str]] = ..., bytes_up: _Optional[_Mapping[str, int]] = ..., bytes_down: _Optional[_Mapping[str, int]] = ..., message: _Optional[str] = ..., selected: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("federation_id", "round", "stage", "profile", "participants", "rounds_completed", "rounds_planned", "recent_rounds")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_PLANNED_FIELD_NUMBER: _ClassVar[int]
    RECENT_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    round: int
    stage: Stage
    profile: Profile
    participants: _containers.RepeatedCompositeFieldContainer[ParticipantStatus]
    rounds_completed: int
    rounds_planned: int
    recent_rounds: _containers.RepeatedCompositeFieldContainer[RoundSummary]
    def __init__(self, federation_id: _Optional[str] = ..., round: _Optional[int] = ..., stage: _Optional[_Union[Stage, str]] = ..., profile: _Optional[_Union[Profile, str]] = ..., participants: _Optional[_Iterable[_Union[ParticipantStatus, _Mapping]]] = ..., rounds_completed: _Optional[int] = ..., rounds_planned: _Optional[int] = ..., recent_rounds: _Optional[_Iterable[_Union[RoundSummary, _Mapping]]] = ...) -> None: ...
