//! Workspace file rules (in progress).
