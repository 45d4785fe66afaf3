"""Wire formats: strict msgpack records, message registries, framing."""
