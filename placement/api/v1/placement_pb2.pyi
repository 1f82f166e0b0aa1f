from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_UNSPECIFIED: _ClassVar[Operation]
    OPERATION_LOCK: _ClassVar[Operation]
    OPERATION_UPDATE: _ClassVar[Operation]
    OPERATION_UNLOCK: _ClassVar[Operation]
OPERATION_UNSPECIFIED: Operation
OPERATION_LOCK: Operation
OPERATION_UPDATE: Operation
OPERATION_UNLOCK: Operation

class Host(_message.Message):
    __slots__ = ("name", "address", "app_id", "namespace", "actor_types", "api_level", "incarnation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TYPES_FIELD_NUMBER: _ClassVar[int]
    API_LEVEL_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    app_id: str
    namespace: str
    actor_types: _containers.RepeatedScalarFieldContainer[str]
    api_level: int
    incarnation: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., app_id: _Optional[str] = ..., namespace: _Optional[str] = ..., actor_types: _Optional[_Iterable[str]] = ..., api_level: _Optional[int] = ..., incarnation: _Optional[str] = ...) -> None: ...

class HostReport(_message.Message):
    __slots__ = ("status", "ack", "leave")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    LEAVE_FIELD_NUMBER: _ClassVar[int]
    status: Host
    ack: RoundAck
    leave: Leave
    def __init__(self, status: _Optional[_Union[Host, _Mapping]] = ..., ack: _Optional[_Union[RoundAck, _Mapping]] = ..., leave: _Optional[_Union[Leave, _Mapping]] = ...) -> None: ...

class Leave(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoundAck(_message.Message):
    __slots__ = ("operation", "version", "term")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    operation: Operation
    version: int
    term: int
    def __init__(self, operation: _Optional[_Union[Operation, str]] = ..., version: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class PlacementTable(_message.Message):
    __slots__ = ("version", "term", "hosts", "virtual_nodes", "api_level")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_NODES_FIELD_NUMBER: _ClassVar[int]
    API_LEVEL_FIELD_NUMBER: _ClassVar[int]
    version: int
    term: int
    hosts: _containers.RepeatedCompositeFieldContainer[Host]
    virtual_nodes: int
    api_level: int
    def __init__(self, version: _Optional[int] = ..., term: _Optional[int] = ..., hosts: _Optional[_Iterable[_Union[Host, _Mapping]]] = ..., virtual_nodes: _Optional[int] = ..., api_level: _Optional[int] = ...) -> None: ...

class TableDelta(_message.Message):
    __slots__ = ("base_version", "upserts", "removed", "virtual_nodes", "api_level")
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPSERTS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_NODES_FIELD_NUMBER: _ClassVar[int]
    API_LEVEL_FIELD_NUMBER: _ClassVar[int]
    base_version: int
    upserts: _containers.RepeatedCompositeFieldContainer[Host]
    removed: _containers.RepeatedScalarFieldContainer[str]
    virtual_nodes: int
    api_level: int
    def __init__(self, base_version: _Optional[int] = ..., upserts: _Optional[_Iterable[_Union[Host, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ..., virtual_nodes: _Optional[int] = ..., api_level: _Optional[int] = ...) -> None: ...

class PlacementOrder(_message.Message):
    __slots__ = ("operation", "version", "term", "table", "not_leader", "delta")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    NOT_LEADER_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    operation: Operation
    version: int
    term: int
    table: PlacementTable
    not_leader: NotLeader
    delta: TableDelta
    def __init__(self, operation: _Optional[_Union[Operation, str]] = ..., version: _Optional[int] = ..., term: _Optional[int] = ..., table: _Optional[_Union[PlacementTable, _Mapping]] = ..., not_leader: _Optional[_Union[NotLeader, _Mapping]] = ..., delta: _Optional[_Union[TableDelta, _Mapping]] = ...) -> None: ...

class NotLeader(_message.Message):
    __slots__ = ("leader_address",)
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    leader_address: str
    def __init__(self, leader_address: _Optional[str] = ...) -> None: ...

class GetPlacementInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PlacementInfo(_message.Message):
    __slots__ = ("node_id", "is_leader", "leader_address", "term", "table_version", "hosts", "has_quorum")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    TABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    HAS_QUORUM_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    is_leader: bool
    leader_address: str
    term: int
    table_version: int
    hosts: _containers.RepeatedCompositeFieldContainer[Host]
    has_quorum: bool
    def __init__(self, node_id: _Optional[str] = ..., is_leader: _Optional[bool] = ..., leader_address: _Optional[str] = ..., term: _Optional[int] = ..., table_version: _Optional[int] = ..., hosts: _Optional[_Iterable[_Union[Host, _Mapping]]] = ..., has_quorum: _Optional[bool] = ...) -> None: ...
