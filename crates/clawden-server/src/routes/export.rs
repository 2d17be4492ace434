//! `GET /api/v1/export`: everything a user owns, as one zip, streamed.
//!
//! The archive is written by a blocking task into a bounded in-memory pipe whose other end is
//! the response body, while an async task reads the store page by page and hands the pieces
//! over a bounded channel. At any time only a few pages are in memory, however large the
//! account. Secrets never enter the archive: credentials appear by name only, and no API key,
//! gateway token, TOTP secret, recovery code or password hash is ever read for it.

use crate::audit;
use crate::auth::{Auth, SessionAuthed};
use crate::error::ApiError;
use crate::openclaw;
use crate::routes::conversations::MessageBody;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use clawden_core::{Principal, Role};
use clawden_store::{AuditChain, AuditCursor, Conversation, StoreError};
use futures::StreamExt;
use serde_json::json;
use std::io::Write;
use tokio::sync::mpsc;

/// Messages (and audit records) read per store call.
const PAGE: i64 = 200;
/// Pieces in flight between the reader and the zip writer.
const CHANNEL: usize = 8;
/// Bytes buffered between the zip writer and the response.
const PIPE_BYTES: usize = 64 * 1024;

/// What the store reader hands to the zip writer.
enum Piece {
    /// Starts a new file in the archive.
    File(String),
    /// More bytes of the current file.
    Bytes(Vec<u8>),
    /// Something failed: the archive must not look complete.
    Abort,
}

/// Sends pieces to the writer; fails once the writer is gone (the client went away).
struct Sink(mpsc::Sender<Piece>);

impl Sink {
    async fn file(&self, name: impl Into<String>) -> Result<(), ApiError> {
        self.send(Piece::File(name.into())).await
    }

    async fn bytes(&self, bytes: impl Into<Vec<u8>>) -> Result<(), ApiError> {
        self.send(Piece::Bytes(bytes.into())).await
    }

    async fn whole(&self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Result<(), ApiError> {
        self.file(name).await?;
        self.bytes(bytes).await
    }

    async fn json(&self, name: impl Into<String>, value: &impl serde::Serialize) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(ApiError::internal)?;
        self.whole(name, bytes).await
    }

    async fn send(&self, piece: Piece) -> Result<(), ApiError> {
        self.0.send(piece).await.map_err(|_| ApiError::internal("export: the archive writer stopped"))
    }
}

/// Everything the caller owns as a zip: `README.md`, `account.json`, `usage.json`,
/// `audit.json`, `conversations/<id>.json` and `.md`, and for each instance they own an
/// OpenClaw workspace folder with its `openclaw.json`. Session only.
#[utoipa::path(get, path = "/api/v1/export", tag = "account",
    responses((status = 200, content_type = "application/zip", body = Vec<u8>,
               description = "a zip archive; docs/export.md describes its layout"),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
) -> Result<Response, ApiError> {
    let ev = audit::success(&state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "account.export");
    state.store.record(ev).await?;
    Ok(stream_export(state, auth))
}

/// Starts the reader and the writer and answers with the archive as it is written.
pub(crate) fn stream_export(state: AppState, auth: Auth) -> Response {
    let day = clawden_agent::runtime::utc_day(state.now());
    let (tx, rx) = mpsc::channel::<Piece>(CHANNEL);
    let (pipe_read, pipe_write) = tokio::io::duplex(PIPE_BYTES);
    let bridge = tokio_util::io::SyncIoBridge::new(pipe_write);
    let writer = tokio::task::spawn_blocking(move || write_zip(rx, bridge));
    let user = auth.user.id;
    let done = tokio::spawn(async move {
        let sink = Sink(tx);
        let read = read_everything(&state, &auth, &sink).await;
        if let Err(err) = &read {
            tracing::error!(user.id = %user, error.code = err.code(), "export failed while reading");
            let _ = sink.send(Piece::Abort).await;
        }
        drop(sink);
        let written = writer.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(err) = &written {
            tracing::warn!(user.id = %user, error.detail = %err, "export stopped while writing");
        }
        read.is_ok() && written.is_ok()
    });
    // After the last byte, the body fails (the connection is cut, never a clean end) if
    // anything went wrong, so a client can never take a partial archive for a whole one.
    let tail = futures::stream::once(async move {
        match done.await {
            Ok(true) => None,
            _ => Some(Err(std::io::Error::other("the export failed"))),
        }
    })
    .filter_map(futures::future::ready);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(pipe_read).chain(tail));
    let name = format!("attachment; filename=\"clawden-export-{day}.zip\"");
    let disposition = HeaderValue::from_str(&name)
        .unwrap_or_else(|_| HeaderValue::from_static("attachment; filename=\"clawden-export.zip\""));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/zip")),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// The blocking half: pieces in, zip out.
fn write_zip(mut rx: mpsc::Receiver<Piece>, out: impl Write) -> zip::result::ZipResult<()> {
    let mut zip = zip::ZipWriter::new_stream(out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    while let Some(piece) = rx.blocking_recv() {
        match piece {
            Piece::File(name) => zip.start_file(name, options)?,
            Piece::Bytes(bytes) => zip.write_all(&bytes)?,
            Piece::Abort => return Err(zip::result::ZipError::Io(std::io::Error::other("export aborted"))),
        }
    }
    let mut out = zip.finish()?.into_inner();
    out.flush()?;
    Ok(())
}

/// The async half: reads the store in pages and hands each file over.
async fn read_everything(state: &AppState, auth: &Auth, sink: &Sink) -> Result<(), ApiError> {
    let principal = auth.principal();
    let user = state.store.user(&principal, auth.user.id).await?.ok_or_else(ApiError::not_found)?;
    let memberships = state.store.memberships(&principal).await?;
    let owned: Vec<_> = memberships.iter().filter(|m| m.role == Role::Owner).cloned().collect();
    let agents: Vec<(String, String)> =
        owned.iter().map(|m| (openclaw::agent_id(m.id, &m.name), m.name.clone())).collect();
    sink.whole("README.md", readme(&user.email, state.now(), &owned, &agents)).await?;

    let totp = state.store.totp_enabled(&principal, user.id).await?;
    let credentials: Vec<_> = state
        .store
        .credentials(&principal)
        .await?
        .into_iter()
        .map(|c| json!({ "name": c.name, "updated_at": c.updated_at }))
        .collect();
    let api_keys: Vec<_> = state
        .store
        .api_keys(&principal)
        .await?
        .into_iter()
        .map(|k| json!({ "name": k.name, "created_at": k.created_at, "last_used_at": k.last_used_at }))
        .collect();
    let account = json!({
        "format": "clawden-export/1",
        "exported_at": state.now(),
        "id": user.id.to_string(),
        "email": user.email,
        "tier": user.tier.to_string(),
        "platform_admin": user.platform_admin,
        "created_at": user.created_at,
        "totp_enabled": totp,
        "instances": memberships.iter().map(|m| json!({
            "id": m.id.to_string(), "name": m.name, "role": m.role.to_string(),
        })).collect::<Vec<_>>(),
        "credentials": credentials,
        "api_keys": api_keys,
    });
    sink.json("account.json", &account).await?;

    let usage: Vec<_> = state
        .store
        .usage_between(&principal, "0000-01-01", "9999-12-31")
        .await?
        .into_iter()
        .map(|(day, u)| {
            json!({ "day": day, "messages": u.messages, "input_tokens": u.input_tokens,
                    "output_tokens": u.output_tokens, "tool_calls": u.tool_calls })
        })
        .collect();
    sink.json("usage.json", &usage).await?;

    write_audit(state, &principal, sink).await?;

    for conversation in state.store.conversations(&principal).await? {
        write_conversation(state, &principal, &conversation, sink).await?;
    }

    for (m, (agent, _)) in owned.iter().zip(&agents) {
        let member = Principal::Member { user: user.id, instance: m.id, role: m.role };
        let files = openclaw::export_files(state.store.read_files(&member, m.id).await?);
        let base = format!("instances/{}", m.id);
        for (path, text) in files {
            sink.whole(format!("{base}/workspace/{path}"), text).await?;
        }
        let config = openclaw::openclaw_config(&[(agent.clone(), m.name.clone())]);
        sink.json(format!("{base}/openclaw.json"), &config).await?;
    }
    if !owned.is_empty() {
        sink.json("openclaw.json", &openclaw::openclaw_config(&agents)).await?;
    }
    Ok(())
}

/// `audit.json`: the caller's own records, oldest first, as one JSON array written in pages.
async fn write_audit(state: &AppState, principal: &Principal, sink: &Sink) -> Result<(), ApiError> {
    sink.file("audit.json").await?;
    sink.bytes(b"[".to_vec()).await?;
    let mut cursor: Option<AuditCursor> = None;
    let mut first = true;
    loop {
        let page = state.store.own_audit_after(principal, cursor.as_ref(), PAGE as u32).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(AuditCursor::after(last));
        let mut chunk = Vec::new();
        for r in &page {
            if !first {
                chunk.push(b',');
            }
            first = false;
            let value = json!({
                "chain": r.chain, "seq": r.seq, "at": r.at, "action": r.action, "target": r.target,
                "outcome": r.outcome, "instance_id": r.instance_id, "ip": r.ip,
            });
            serde_json::to_writer(&mut chunk, &value).map_err(ApiError::internal)?;
        }
        sink.bytes(chunk).await?;
        if page.len() < PAGE as usize {
            break;
        }
    }
    sink.bytes(b"]\n".to_vec()).await
}

/// `conversations/<id>.json` and `conversations/<id>.md`, each written in pages.
async fn write_conversation(
    state: &AppState,
    principal: &Principal,
    c: &Conversation,
    sink: &Sink,
) -> Result<(), ApiError> {
    let head = json!({ "id": c.id.to_string(), "instance_id": c.instance_id.to_string(), "title": c.title,
                       "created_at": c.created_at, "updated_at": c.updated_at });
    let mut opening = serde_json::to_vec(&head).map_err(ApiError::internal)?;
    // `{…}` becomes `{…,"messages":[`; the array is closed after the last page.
    opening.pop();
    opening.extend_from_slice(b",\"messages\":[");
    sink.file(format!("conversations/{}.json", c.id)).await?;
    sink.bytes(opening).await?;
    let mut first = true;
    for_each_page(
        state,
        principal,
        c,
        |page| {
            let mut chunk = Vec::new();
            for m in page {
                if !first {
                    chunk.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut chunk, &MessageBody::from(m)).map_err(ApiError::internal)?;
            }
            Ok(chunk)
        },
        sink,
    )
    .await?;
    sink.bytes(b"]}\n".to_vec()).await?;

    sink.file(format!("conversations/{}.md", c.id)).await?;
    let title = if c.title.trim().is_empty() { "Conversation" } else { c.title.as_str() };
    sink.bytes(format!(
        "# {}\n\nStarted {} · instance `{}`\n",
        one_line(title),
        crate::dashboard::when(c.created_at),
        c.instance_id
    ))
    .await?;
    for_each_page(
        state,
        principal,
        c,
        |page| {
            let mut chunk = String::new();
            for m in page {
                let body = MessageBody::from(m);
                let who = match body.role_name() {
                    "user" => "You",
                    "assistant" => "Agent",
                    other => other,
                };
                chunk.push_str(&format!("\n## {who} · {}\n\n{}\n", crate::dashboard::when(m.created_at), body.text()));
            }
            Ok(chunk.into_bytes())
        },
        sink,
    )
    .await
}

async fn for_each_page(
    state: &AppState,
    principal: &Principal,
    c: &Conversation,
    mut render: impl FnMut(&[clawden_store::StoredMessage]) -> Result<Vec<u8>, ApiError>,
    sink: &Sink,
) -> Result<(), ApiError> {
    let mut after = 0;
    loop {
        let page = match state.store.messages_after(principal, c.id, after, PAGE).await {
            Ok(page) => page,
            // Deleted while the export ran: it ends here, and the archive stays well-formed.
            Err(StoreError::NotFound) => break,
            Err(other) => return Err(other.into()),
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        sink.bytes(render(&page)?).await?;
        if page.len() < PAGE as usize {
            break;
        }
    }
    Ok(())
}

fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The archive's own README: what is where, and how to give a workspace to OpenClaw.
fn readme(email: &str, now: i64, owned: &[clawden_store::Membership], agents: &[(String, String)]) -> String {
    let mut out = format!(
        "# clawden export\n\nEverything clawden keeps for {email}, exported {}.\n\n\
## Layout\n\n\
- `account.json` — your account: id, email, tier, creation time, whether two-factor sign-in is on, \
the instances you belong to with your role, and your stored credentials and API keys **by name only**.\n\
- `usage.json` — your daily counters (messages, tokens, tool calls).\n\
- `audit.json` — the audit records of what you did (and what was done on your behalf).\n\
- `conversations/<id>.json` — each conversation with all its messages; `conversations/<id>.md` — the same \
as a readable transcript.\n\
- `instances/<id>/workspace/` — for each instance you own, its agent workspace in the OpenClaw layout \
(`SOUL.md`, `AGENTS.md`, `USER.md`, `IDENTITY.md`, `TOOLS.md`, `MEMORY.md`, `HEARTBEAT.md`, \
`skills/<name>/SKILL.md`).\n\
- `instances/<id>/openclaw.json` — an OpenClaw config with that one agent; `openclaw.json` at the top — \
one config with every agent you own.\n\n\
No secret is in this archive: no password hash, API key, gateway token, two-factor secret, recovery code \
or credential value.\n\n\
## Using a workspace with OpenClaw\n\n\
Each agent is configured under `agents.entries.<agent id>` with its `name` and `workspace` (OpenClaw \
2026.9 rejects a bare top-level `workspace` key; a config with several agents also carries \
`agents.ownership: \"explicit\"`). The `workspace` value is the folder the agent reads, and it must name \
where **you** put the folder:\n\n\
1. Copy `instances/<id>/workspace/` to the path in its config entry, `~/.openclaw/workspace-<agent id>` \
(or anywhere else, and change `workspace` to that absolute path).\n\
2. Use `instances/<id>/openclaw.json` as `~/.openclaw/openclaw.json`, or merge its `agents.entries` into \
the config you have (the top-level `openclaw.json` already holds all of them).\n\
3. Run `openclaw config validate`.\n\n\
OpenClaw 2026.9 no longer reads `TOOLS.md` or `HEARTBEAT.md`. Both are kept, and the content of \
`TOOLS.md` is also copied into `AGENTS.md` under a `## Tools` heading (between `clawden:tools` markers) so \
it still reaches the model. Importing the workspace back into clawden drops that copied block again; \
`TOOLS.md` stays its source.\n\n\
To import a workspace into a clawden instance: zip (or tar) the workspace folder and send it to \
`POST /api/v1/instances/<id>/import`.\n",
        crate::dashboard::when(now)
    );
    if !owned.is_empty() {
        out.push_str("\n## Your agents\n\n| instance | name | agent id |\n|---|---|---|\n");
        for (m, (agent, _)) in owned.iter().zip(agents) {
            out.push_str(&format!("| `{}` | {} | `{agent}` |\n", m.id, one_line(&m.name).replace('|', "\\|")));
        }
    }
    out
}
