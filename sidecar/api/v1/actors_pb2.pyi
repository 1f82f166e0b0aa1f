from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CallStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALL_STATUS_OK: _ClassVar[CallStatus]
    CALL_STATUS_NOT_OWNER: _ClassVar[CallStatus]
    CALL_STATUS_UNKNOWN_TYPE: _ClassVar[CallStatus]
    CALL_STATUS_ACTOR_ERROR: _ClassVar[CallStatus]
    CALL_STATUS_TIMEOUT: _ClassVar[CallStatus]
    CALL_STATUS_INVALID: _ClassVar[CallStatus]
CALL_STATUS_OK: CallStatus
CALL_STATUS_NOT_OWNER: CallStatus
CALL_STATUS_UNKNOWN_TYPE: CallStatus
CALL_STATUS_ACTOR_ERROR: CallStatus
CALL_STATUS_TIMEOUT: CallStatus
CALL_STATUS_INVALID: CallStatus

class ActorRef(_message.Message):
    __slots__ = ("actor_type", "actor_id")
    ACTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    actor_type: str
    actor_id: str
    def __init__(self, actor_type: _Optional[str] = ..., actor_id: _Optional[str] = ...) -> None: ...

class ActorCall(_message.Message):
    __slots__ = ("call_id", "actor", "method", "payload", "table_version", "metadata", "timeout_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    actor: ActorRef
    method: str
    payload: bytes
    table_version: int
    metadata: _containers.ScalarMap[str, str]
    timeout_ms: int
    def __init__(self, call_id: _Optional[int] = ..., actor: _Optional[_Union[ActorRef, _Mapping]] = ..., method: _Optional[str] = ..., payload: _Optional[bytes] = ..., table_version: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ActorResult(_message.Message):
    __slots__ = ("call_id", "status", "payload", "message", "table_version")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    status: CallStatus
    payload: bytes
    message: str
    table_version: int
    def __init__(self, call_id: _Optional[int] = ..., status: _Optional[_Union[CallStatus, str]] = ..., payload: _Optional[bytes] = ..., message: _Optional[str] = ..., table_version: _Optional[int] = ...) -> None: ...

class ActorCallBatch(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[ActorCall]
    def __init__(self, calls: _Optional[_Iterable[_Union[ActorCall, _Mapping]]] = ...) -> None: ...

class ActorResultBatch(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ActorResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ActorResult, _Mapping]]] = ...) -> None: ...
