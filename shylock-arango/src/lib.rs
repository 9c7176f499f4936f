//! ArangoDB backend for shylock (work in progress).
