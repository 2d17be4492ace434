//! Per-instance-member Linux sandboxes (built in the sandbox issues).
