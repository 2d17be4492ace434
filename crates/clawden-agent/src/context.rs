//! Building what a provider receives (in progress).
