//! Tool policy (filled below).
