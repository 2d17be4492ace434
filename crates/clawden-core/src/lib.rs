//! Domain types shared by every clawden crate.
//!
//! Nothing here performs I/O: these are the words the other crates speak — ids, the
//! [`Principal`] that every store call carries, roles, tiers and the injected [`Clock`].

pub mod clock;
pub mod ids;
pub mod principal;
pub mod types;

pub use clock::{Clock, FixedClock, SystemClock, UnixMillis};
pub use ids::{ApiKeyId, ApprovalId, ConversationId, InstanceId, InviteId, SessionId, UserId};
pub use principal::Principal;
pub use types::{Outcome, Role, SignupMode, Tier};
