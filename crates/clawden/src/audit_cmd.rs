//! `clawden audit verify [--instance ID]`: chains any records not chained yet, then checks
//! every chain (or one instance's). Exit 0 when intact; 1 and the first broken record if not.

use clap::Subcommand;
use clawden_core::{Clock, InstanceId, SystemClock};
use clawden_server::Settings;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the audit hash chains.
    Verify {
        /// Only this instance's chain.
        #[arg(long)]
        instance: Option<InstanceId>,
    },
}

/// Runs the command; returns the process exit code.
pub async fn run(cmd: &AuditCommand, settings: Settings) -> anyhow::Result<u8> {
    let AuditCommand::Verify { instance } = cmd;
    let (store, _) = clawden_server::open_storage(&settings, &SystemClock).await?;
    let now = SystemClock.now_millis();
    let chained = store.chain_audit(now).await?;
    let only = instance.map(|i| format!("instance:{i}"));
    match store.verify_audit(only.as_deref(), now).await? {
        None => {
            println!(
                "audit log intact{}",
                if chained > 0 { format!(" ({chained} new records chained)") } else { String::new() }
            );
            Ok(0)
        }
        Some(broken) => {
            println!("audit chain {} is broken at record {}: {}", broken.chain, broken.seq, broken.reason);
            Ok(1)
        }
    }
}
