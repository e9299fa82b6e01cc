"""Generation backends behind one `Policy` interface, and (later) the batched game engine."""
