//! Operator commands: users, invites, password resets, master key rotation.

use anyhow::{bail, Context};
use clap::Subcommand;
use clawden_core::{Clock, Outcome, Principal, SystemClock, Tier};
use clawden_crypto::password::check_policy;
use clawden_crypto::{PasswordHasher, PlainToken};
use clawden_server::accounts::validate_email;
use clawden_server::Settings;
use clawden_store::{AuditChain, AuditEvent, NewUser, Store, UserStore};
use secrecy::{ExposeSecret, SecretString};
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a user (password read from stdin).
    CreateUser {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Make the user a platform admin.
        #[arg(long)]
        platform_admin: bool,
        /// Tier: base or invite.
        #[arg(long, default_value = "base")]
        tier: Tier,
    },
    /// Print a new invite code that upgrades a user to the invite-enabled tier.
    CreateInvite {
        /// How many times it can be redeemed.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid (e.g. 7d, 12h).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        expires_in: Duration,
    },
    /// Set a new password (read from stdin) and end the user's sessions.
    ResetPassword {
        /// Email address.
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Add a new master key version and re-wrap every data key with it.
    Rotate {
        /// Drop master key versions no data key uses any more.
        #[arg(long)]
        retire: bool,
    },
}

fn read_password() -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_owned();
    if pw.is_empty() {
        bail!("no password on stdin");
    }
    Ok(SecretString::from(pw))
}

fn operator_event(action: &str, target: String) -> AuditEvent {
    AuditEvent {
        chain: AuditChain::System,
        actor: None,
        instance: None,
        action: action.into(),
        target,
        outcome: Outcome::Success,
        ip: None,
        at: SystemClock.now_millis(),
    }
}

pub async fn run_admin(cmd: &AdminCommand, settings: Settings) -> anyhow::Result<()> {
    let (store, keyring) = clawden_server::open_storage(&settings, &SystemClock).await?;
    let now = SystemClock.now_millis();
    match cmd {
        AdminCommand::CreateUser { email, platform_admin, tier } => {
            let email = validate_email(email).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            let password = read_password()?;
            check_policy(password.expose_secret(), &email)?;
            let hash = tokio::task::spawn_blocking(move || PasswordHasher::owasp().hash(&password)).await?;
            let new = NewUser {
                email,
                password_hash: hash,
                tier: *tier,
                platform_admin: *platform_admin,
                instance_name: "My agent".into(),
                now,
                invite: None,
                gateway_token: keyring.hasher().hash(
                    clawden_server::auth::GATEWAY_DOMAIN,
                    PlainToken::generate(clawden_server::auth::GATEWAY_PREFIX).expose(),
                ),
                initial_files: clawden_server::accounts::default_workspace(),
            };
            let (user, instance) =
                store.create_user(&Principal::System, new, operator_event("admin.user.create", String::new())).await?;
            println!("created user {} ({}) with instance {}", user.email, user.id, instance.id);
        }
        AdminCommand::CreateInvite { uses, expires_in } => {
            if *uses == 0 {
                bail!("--uses must be at least 1");
            }
            let expires = now.saturating_add(i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX));
            let code =
                clawden_server::accounts::issue_invite(store.as_ref(), &keyring, None, i64::from(*uses), expires, now)
                    .await?;
            println!("{}", code.expose());
        }
        AdminCommand::ResetPassword { email } => {
            let user = store
                .user_by_email(&Principal::System, email)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user with that email"))?;
            let password = read_password()?;
            check_policy(password.expose_secret(), &user.email)?;
            let hash = tokio::task::spawn_blocking(move || PasswordHasher::owasp().hash(&password)).await?;
            let mut ev = operator_event("admin.password.reset", format!("user:{}", user.id));
            ev.chain = AuditChain::Account(user.id);
            store.set_password_hash(&Principal::System, user.id, &hash, Some(None), Some(ev)).await?;
            println!("password reset for {}; their sessions have ended", user.email);
        }
    }
    store.ping().await?;
    Ok(())
}

pub async fn run_keys(cmd: &KeysCommand, settings: Settings) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate { retire } => {
            let (master, source) = clawden_server::load_master_keys(&settings)?;
            let path = match source {
                clawden_store::MasterKeySource::File(path) => path,
                clawden_store::MasterKeySource::Fixed => {
                    bail!("the master key comes from the environment; rotate it there and re-run with the new key file")
                }
            };
            let mut master = master;
            if !*retire {
                let version = master.add_version();
                master.save(&path)?;
                eprintln!("master key version {version} added");
            }
            let (_store, keyring) = clawden_server::open_storage(&settings, &SystemClock).await?;
            let total: i64 = keyring.key_store().count_by_version().await?.iter().map(|(_, n)| n).sum();
            let progress = Progress::new(u64::try_from(total).unwrap_or(0));
            let mut done = 0usize;
            loop {
                let n = keyring.rewrap_batch(1000).await?;
                if n == 0 {
                    break;
                }
                done += n;
                progress.advance(n, done);
            }
            progress.finish();
            eprintln!("re-wrapped {done} data keys; every key now uses version {}", master.current().version());
            if *retire {
                let counts = keyring.key_store().count_by_version().await?;
                let current = master.current().version();
                if counts.iter().any(|(v, n)| *v != current && *n > 0) {
                    bail!("some data keys still use an old version; run `clawden keys rotate` first");
                }
                let dropped = master.retire_old();
                master.save(&path)?;
                eprintln!("retired master key versions {dropped:?}");
            }
        }
    }
    Ok(())
}

/// Re-wrap progress: a bar on a terminal, one plain line per batch otherwise (logs, CI).
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { total: u64 },
}

impl Progress {
    fn new(total: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines { total };
        }
        let bar = indicatif::ProgressBar::new(total);
        let style = indicatif::ProgressStyle::with_template(
            "re-wrapping data keys {bar:40.cyan/blue} {pos}/{len} ({eta} left)",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Progress::Bar(bar)
    }

    fn advance(&self, batch: usize, done: usize) {
        match self {
            Progress::Bar(bar) => bar.inc(u64::try_from(batch).unwrap_or(u64::MAX)),
            Progress::Lines { total } => eprintln!("re-wrapped {done}/{total} data keys"),
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
