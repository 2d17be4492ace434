//! clawden-crypto
