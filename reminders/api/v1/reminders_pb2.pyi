from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReminderKey(_message.Message):
    __slots__ = ("namespace", "app_id", "actor_type", "actor_id", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    actor_type: str
    actor_id: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., actor_type: _Optional[str] = ..., actor_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Reminder(_message.Message):
    __slots__ = ("key", "due_time", "period", "ttl", "data", "next_due_ms", "remaining", "expires_ms", "created_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_MS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    key: ReminderKey
    due_time: str
    period: str
    ttl: str
    data: bytes
    next_due_ms: int
    remaining: int
    expires_ms: int
    created_ms: int
    def __init__(self, key: _Optional[_Union[ReminderKey, _Mapping]] = ..., due_time: _Optional[str] = ..., period: _Optional[str] = ..., ttl: _Optional[str] = ..., data: _Optional[bytes] = ..., next_due_ms: _Optional[int] = ..., remaining: _Optional[int] = ..., expires_ms: _Optional[int] = ..., created_ms: _Optional[int] = ...) -> None: ...

class CreateReminderRequest(_message.Message):
    __slots__ = ("key", "due_time", "period", "ttl", "data")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    key: ReminderKey
    due_time: str
    period: str
    ttl: str
    data: bytes
    def __init__(self, key: _Optional[_Union[ReminderKey, _Mapping]] = ..., due_time: _Optional[str] = ..., period: _Optional[str] = ..., ttl: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class CreateReminderResponse(_message.Message):
    __slots__ = ("reminder",)
    REMINDER_FIELD_NUMBER: _ClassVar[int]
    reminder: Reminder
    def __init__(self, reminder: _Optional[_Union[Reminder, _Mapping]] = ...) -> None: ...

class CreateRemindersRequest(_message.Message):
    __slots__ = ("reminders",)
    REMINDERS_FIELD_NUMBER: _ClassVar[int]
    reminders: _containers.RepeatedCompositeFieldContainer[CreateReminderRequest]
    def __init__(self, reminders: _Optional[_Iterable[_Union[CreateReminderRequest, _Mapping]]] = ...) -> None: ...

class CreateRemindersResponse(_message.Message):
    __slots__ = ("reminders",)
    REMINDERS_FIELD_NUMBER: _ClassVar[int]
    reminders: _containers.RepeatedCompositeFieldContainer[Reminder]
    def __init__(self, reminders: _Optional[_Iterable[_Union[Reminder, _Mapping]]] = ...) -> None: ...

class GetReminderRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ReminderKey
    def __init__(self, key: _Optional[_Union[ReminderKey, _Mapping]] = ...) -> None: ...

class ListRemindersRequest(_message.Message):
    __slots__ = ("namespace", "app_id", "actor_type", "actor_id", "page_size", "continuation_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    actor_type: str
    actor_id: str
    page_size: int
    continuation_token: str
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., actor_type: _Optional[str] = ..., actor_id: _Optional[str] = ..., page_size: _Optional[int] = ..., continuation_token: _Optional[str] = ...) -> None: ...

class ListRemindersResponse(_message.Message):
    __slots__ = ("reminders", "continuation_token")
    REMINDERS_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reminders: _containers.RepeatedCompositeFieldContainer[Reminder]
    continuation_token: str
    def __init__(self, reminders: _Optional[_Iterable[_Union[Reminder, _Mapping]]] = ..., continuation_token: _Optional[str] = ...) -> None: ...

class DeleteReminderRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ReminderKey
    def __init__(self, key: _Optional[_Union[ReminderKey, _Mapping]] = ...) -> None: ...

class DeleteReminderResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class TriggerStreamRequest(_message.Message):
    __slots__ = ("subscribe", "ack")
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    subscribe: Subscribe
    ack: TriggerAck
    def __init__(self, subscribe: _Optional[_Union[Subscribe, _Mapping]] = ..., ack: _Optional[_Union[TriggerAck, _Mapping]] = ...) -> None: ...

class Subscribe(_message.Message):
    __slots__ = ("host", "namespace", "app_id", "actor_types", "known_term")
    HOST_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TYPES_FIELD_NUMBER: _ClassVar[int]
    KNOWN_TERM_FIELD_NUMBER: _ClassVar[int]
    host: str
    namespace: str
    app_id: str
    actor_types: _containers.RepeatedScalarFieldContainer[str]
    known_term: int
    def __init__(self, host: _Optional[str] = ..., namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., actor_types: _Optional[_Iterable[str]] = ..., known_term: _Optional[int] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("fire_id", "key", "data", "due_ms", "sent_ms", "attempt")
    FIRE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DUE_MS_FIELD_NUMBER: _ClassVar[int]
    SENT_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    fire_id: int
    key: ReminderKey
    data: bytes
    due_ms: int
    sent_ms: int
    attempt: int
    def __init__(self, fire_id: _Optional[int] = ..., key: _Optional[_Union[ReminderKey, _Mapping]] = ..., data: _Optional[bytes] = ..., due_ms: _Optional[int] = ..., sent_ms: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class TriggerBatch(_message.Message):
    __slots__ = ("term", "triggers", "not_leader")
    TERM_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    NOT_LEADER_FIELD_NUMBER: _ClassVar[int]
    term: int
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    not_leader: NotLeader
    def __init__(self, term: _Optional[int] = ..., triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ..., not_leader: _Optional[_Union[NotLeader, _Mapping]] = ...) -> None: ...

class TriggerAck(_message.Message):
    __slots__ = ("term", "delivered", "failed")
    TERM_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    term: int
    delivered: _containers.RepeatedScalarFieldContainer[int]
    failed: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, term: _Optional[int] = ..., delivered: _Optional[_Iterable[int]] = ..., failed: _Optional[_Iterable[int]] = ...) -> None: ...

class NotLeader(_message.Message):
    __slots__ = ("leader_address",)
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    leader_address: str
    def __init__(self, leader_address: _Optional[str] = ...) -> None: ...

class GetRemindersInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemindersInfo(_message.Message):
    __slots__ = ("node_id", "is_leader", "leader_address", "term", "has_quorum", "reminders", "subscribers")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    HAS_QUORUM_FIELD_NUMBER: _ClassVar[int]
    REMINDERS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    is_leader: bool
    leader_address: str
    term: int
    has_quorum: bool
    reminders: int
    subscribers: int
    def __init__(self, node_id: _Optional[str] = ..., is_leader: _Optional[bool] = ..., leader_address: _Optional[str] = ..., term: _Optional[int] = ..., has_quorum: _Optional[bool] = ..., reminders: _Optional[int] = ..., subscribers: _Optional[int] = ...) -> None: ...
