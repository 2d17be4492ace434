//! What each role may do in an instance: the one table the extractors and the docs follow.
//!
//! | action | owner | admin | user |
//! |---|---|---|---|
//! | chat, read own conversations, read files and policy, view dashboard | yes | yes | yes |
//! | write files and the tool policy, skills, channels; decide approvals; stop the agent | yes | yes | no |
//! | list members, invite, change roles, remove members | yes | yes (never owners, never grant owner) | no |
//! | rotate the gateway token, delete the instance, grant `owner` | yes | no | no |
//! | leave the instance | yes (not the last owner) | yes | yes |

use clawden_core::Role;

/// Something a member may be allowed to do in an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Chat, read own conversations, read files and policy.
    Use,
    /// Change files, the tool policy, skills, channels; decide approvals; stop the agent.
    Configure,
    /// List, invite, re-role and remove members (with the owner rules on top).
    ManageMembers,
    /// Rotate the gateway token, delete the instance, grant `owner`.
    Own,
}

/// The roles allowed each action.
pub const PERMISSIONS: &[(Action, &[Role])] = &[
    (Action::Use, &[Role::Owner, Role::Admin, Role::User]),
    (Action::Configure, &[Role::Owner, Role::Admin]),
    (Action::ManageMembers, &[Role::Owner, Role::Admin]),
    (Action::Own, &[Role::Owner]),
];

/// Whether `role` may do `action`.
pub fn allows(role: Role, action: Action) -> bool {
    PERMISSIONS.iter().any(|(a, roles)| *a == action && roles.contains(&role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_the_roles() {
        assert!(allows(Role::User, Action::Use));
        assert!(!allows(Role::User, Action::Configure));
        assert!(allows(Role::Admin, Action::ManageMembers));
        assert!(!allows(Role::Admin, Action::Own));
        assert!(allows(Role::Owner, Action::Own));
        for role in [Role::Owner, Role::Admin, Role::User] {
            assert_eq!(allows(role, Action::Configure), role.can_configure());
        }
    }
}
