"""Generated protobuf and gRPC modules (see proto/ and actorflow/protogen.py)."""
