//! Who is asking. Every store call takes a `Principal` and scopes its query by it.

use crate::ids::{InstanceId, UserId};
use crate::types::Role;

/// The caller on whose behalf a store call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in user acting for themselves.
    User {
        /// The user.
        user: UserId,
    },
    /// A user acting inside one instance with a role there.
    Member {
        /// The user.
        user: UserId,
        /// The instance.
        instance: InstanceId,
        /// Their role in it.
        role: Role,
    },
    /// The server itself: authentication lookups, server-side writes (messages, usage), jobs.
    System,
}

impl Principal {
    /// The user this principal acts for, if any.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Principal::User { user } | Principal::Member { user, .. } => Some(*user),
            Principal::System => None,
        }
    }

    /// The instance this principal acts in, if any.
    pub fn instance_id(&self) -> Option<InstanceId> {
        match self {
            Principal::Member { instance, .. } => Some(*instance),
            _ => None,
        }
    }

    /// Whether this is the server acting for itself.
    pub fn is_system(&self) -> bool {
        matches!(self, Principal::System)
    }
}
