"""Neural Head Avatars: a head model refined by a geometry MLP and coloured by a SIREN texture network."""
