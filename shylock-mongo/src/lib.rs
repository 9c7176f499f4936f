//! MongoDB backend for shylock (work in progress).
