//! Examples for shylock: see the `[[example]]` targets.
