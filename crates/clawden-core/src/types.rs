//! Small domain enums stored as text.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An error parsing one of the stored enum words.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownWord {
    kind: &'static str,
    value: String,
}

macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// The word stored in the database and shown in the API.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err(UnknownWord { kind: $kind, value: other.to_owned() }),
                }
            }
        }
    };
}

word_enum!(
    /// What a user's account may use. An instance's tier is its owner's tier.
    Tier, "tier" {
        /// Chat only: no sandbox, no tools, small quotas.
        Base => "base",
        /// Redeemed an invite: a sandbox, tools, larger quotas.
        Invite => "invite",
    }
);

word_enum!(
    /// A member's role in an instance.
    Role, "role" {
        /// Everything, including deleting the instance.
        Owner => "owner",
        /// Configuration, skills, channels.
        Admin => "admin",
        /// Chat and view the dashboard.
        User => "user",
    }
);

word_enum!(
    /// Who may create an account.
    SignupMode, "signup mode" {
        /// Anyone.
        Open => "open",
        /// Only with a valid invite code.
        InviteOnly => "invite-only",
        /// Nobody; operators create users with `clawden admin create-user`.
        Closed => "closed",
    }
);

word_enum!(
    /// Whether an audited action succeeded.
    Outcome, "outcome" {
        /// It happened.
        Success => "success",
        /// It was attempted and refused or failed.
        Failure => "failure",
    }
);

impl Role {
    /// Whether this role may change the instance's configuration (files, policy, members).
    pub fn can_configure(&self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}
