//! A user's data rights over HTTP: export (an archive OpenClaw loads, holding no secret),
//! import of an OpenClaw workspace (hostile archives refused without a trace), and account
//! deletion that leaves no row and no usable key behind.

#![allow(clippy::unwrap_used)]

mod common;

use clawden_core::{Clock, InstanceId, UserId};
use clawden_store::testing::TestDb;
use clawden_store::KeyOwner;
use common::{error_code, TestApp, PASSWORD};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};

async fn csrf(app: &TestApp, client: &reqwest::Client) -> String {
    let me: Value = client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    me["csrf_token"].as_str().unwrap().to_owned()
}

async fn api_key(app: &TestApp, client: &reqwest::Client) -> String {
    let token = csrf(app, client).await;
    let res = client
        .post(app.at("/api/v1/api-keys"))
        .header("x-csrf-token", token)
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    body["key"].as_str().unwrap().to_owned()
}

async fn put_file(app: &TestApp, key: &str, instance: &str, path: &str, text: &str) {
    let res = reqwest::Client::new()
        .put(app.at(&format!("/api/v1/instances/{instance}/files/{path}")))
        .bearer_auth(key)
        .header("content-type", "text/markdown")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(status, 204, "writing {path}: {}", res.text().await.unwrap_or_default());
}

async fn files(app: &TestApp, key: &str, instance: &str) -> BTreeMap<String, String> {
    let client = reqwest::Client::new();
    let list: Value = client
        .get(app.at(&format!("/api/v1/instances/{instance}/files")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for f in list.as_array().unwrap() {
        let path = f["path"].as_str().unwrap().to_owned();
        let text = client
            .get(app.at(&format!("/api/v1/instances/{instance}/files/{path}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        out.insert(path, text);
    }
    out
}

async fn chat(app: &TestApp, client: &reqwest::Client, text: &str) -> String {
    let token = csrf(app, client).await;
    let created: Value = client
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", &token)
        .json(&json!({"title": "First chat"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let res = client
        .post(app.at(&format!("/api/v1/conversations/{id}/messages")))
        .header("x-csrf-token", &token)
        .json(&json!({"content": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    id
}

async fn export(app: &TestApp, client: &reqwest::Client) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let res = client.get(app.at("/api/v1/export")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/zip");
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    let raw = res.bytes().await.unwrap().to_vec();
    (raw.clone(), unzip(&raw))
}

fn unzip(raw: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(raw)).expect("a valid zip");
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        out.insert(f.name().to_owned(), data);
    }
    out
}

fn text(entries: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    String::from_utf8(entries.get(name).unwrap_or_else(|| panic!("{name} missing: {:?}", entries.keys())).clone())
        .unwrap()
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn tar_gz_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

const SKILL: &str = "---\nname: git\ndescription: Helps with git.\n---\nUse git carefully.\n";

#[tokio::test]
async fn export_contains_openclaw_workspace() {
    let app = TestApp::spawn().await;
    let owner = app.client();
    let me = app.signup(&owner, "export@example.com").await;
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let key = api_key(&app, &owner).await;
    put_file(&app, &key, &instance, "TOOLS.md", "Use the shell wisely.\n").await;
    put_file(&app, &key, &instance, "skills/git/SKILL.md", SKILL).await;
    let conversation = chat(&app, &owner, "hello from the export test").await;

    // A second instance they co-own: the top-level config then holds two agents.
    let other = app.client();
    let other_me = app.signup(&other, "team@example.com").await;
    let team = other_me["instances"][0]["id"].as_str().unwrap().to_owned();
    let t = csrf(&app, &other).await;
    let res = other
        .post(app.at(&format!("/api/v1/instances/{team}/members")))
        .header("x-csrf-token", &t)
        .json(&json!({"email": "export@example.com", "role": "owner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let invitations: Value = owner.get(app.at("/api/v1/invitations")).send().await.unwrap().json().await.unwrap();
    let inv = invitations[0]["id"].as_str().unwrap();
    let t = csrf(&app, &owner).await;
    let res = owner
        .post(app.at(&format!("/api/v1/invitations/{inv}/accept")))
        .header("x-csrf-token", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    // Session only: an API key cannot take everything.
    let res = reqwest::Client::new().get(app.at("/api/v1/export")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(error_code(res).await, (403, "session_required".into()));

    let (_, entries) = export(&app, &owner).await;
    let readme = text(&entries, "README.md");
    assert!(readme.contains("~/.openclaw/workspace-"), "{readme}");
    assert!(readme.contains("agents.entries"), "{readme}");

    let account: Value = serde_json::from_slice(&entries["account.json"]).unwrap();
    assert_eq!(account["email"], "export@example.com");
    assert_eq!(account["tier"], "base");
    assert_eq!(account["totp_enabled"], false);
    assert_eq!(account["instances"].as_array().unwrap().len(), 2);
    assert_eq!(account["api_keys"][0]["name"], "laptop");

    let usage: Value = serde_json::from_slice(&entries["usage.json"]).unwrap();
    assert_eq!(usage[0]["messages"], 1);
    let audit: Value = serde_json::from_slice(&entries["audit.json"]).unwrap();
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"account.export"), "{actions:?}");
    assert!(actions.contains(&"file.write"), "{actions:?}");

    let convo: Value = serde_json::from_slice(&entries[&format!("conversations/{conversation}.json")]).unwrap();
    assert_eq!(convo["title"], "First chat");
    assert_eq!(convo["messages"][0]["content"], "hello from the export test");
    assert_eq!(convo["messages"][1]["role"], "assistant");
    let transcript = text(&entries, &format!("conversations/{conversation}.md"));
    assert!(transcript.starts_with("# First chat\n"), "{transcript}");
    assert!(transcript.contains("## You · ") && transcript.contains("hello from the export test"), "{transcript}");
    assert!(transcript.contains("## Agent · "), "{transcript}");

    for id in [&instance, &team] {
        let base = format!("instances/{id}/workspace");
        for file in ["SOUL.md", "AGENTS.md", "USER.md", "IDENTITY.md", "TOOLS.md", "MEMORY.md", "HEARTBEAT.md"] {
            assert!(entries.contains_key(&format!("{base}/{file}")), "{base}/{file}: {:?}", entries.keys());
        }
        let config: Value = serde_json::from_slice(&entries[&format!("instances/{id}/openclaw.json")]).unwrap();
        assert!(config.get("workspace").is_none(), "no bare top-level workspace key");
        let agents = config["agents"]["entries"].as_object().unwrap();
        assert_eq!(agents.len(), 1);
        let (_, agent) = agents.iter().next().unwrap();
        assert!(agent["name"].is_string());
        assert!(agent["workspace"].as_str().unwrap().starts_with("~/.openclaw/workspace-"));
        assert!(config["agents"].get("ownership").is_none(), "one agent needs no ownership mode");
    }
    let mine = format!("instances/{instance}/workspace");
    assert_eq!(text(&entries, &format!("{mine}/skills/git/SKILL.md")), SKILL);
    assert_eq!(text(&entries, &format!("{mine}/TOOLS.md")), "Use the shell wisely.\n");
    let agents_md = text(&entries, &format!("{mine}/AGENTS.md"));
    let tools_at = agents_md.find("\n## Tools\n").expect("AGENTS.md carries TOOLS.md under ## Tools");
    assert!(agents_md[tools_at..].contains("Use the shell wisely."), "{agents_md}");

    let top: Value = serde_json::from_slice(&entries["openclaw.json"]).unwrap();
    assert_eq!(top["agents"]["ownership"], "explicit");
    assert_eq!(top["agents"]["entries"].as_object().unwrap().len(), 2);
    assert!(top.get("workspace").is_none());
    app.stop().await;
}

/// Every way a secret could be written: as is, hex, and base64 in its common alphabets.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use data_encoding::{BASE32_NOPAD, BASE64, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXUPPER};
    vec![
        secret.to_vec(),
        HEXLOWER.encode(secret).into_bytes(),
        HEXUPPER.encode(secret).into_bytes(),
        BASE64.encode(secret).into_bytes(),
        BASE64_NOPAD.encode(secret).into_bytes(),
        BASE64URL_NOPAD.encode(secret).into_bytes(),
        BASE32_NOPAD.encode(secret).into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() >= 6 && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn export_holds_no_secret() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "secrets@example.com").await;
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let key = api_key(&app, &client).await;
    let credential = "sk-planted-credential-7d1e5c9a4b";
    let res = reqwest::Client::new()
        .put(app.at("/api/v1/credentials/openai"))
        .bearer_auth(&key)
        .json(&json!({"value": credential}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let t = csrf(&app, &client).await;
    let rotated: Value = client
        .post(app.at(&format!("/api/v1/instances/{instance}/gateway-token/rotate")))
        .header("x-csrf-token", &t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gateway = rotated["token"].as_str().unwrap().to_owned();
    let setup: Value = client
        .post(app.at("/api/v1/auth/totp/setup"))
        .header("x-csrf-token", &t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totp_b32 = setup["secret"].as_str().unwrap().to_owned();
    let totp_raw = data_encoding::BASE32_NOPAD.decode(totp_b32.as_bytes()).unwrap();
    let code =
        clawden_server::totp::code_for_step(&totp_raw, clawden_server::totp::step_of(app.clock.now_secs())).unwrap();
    let enabled: Value = client
        .post(app.at("/api/v1/auth/totp/enable"))
        .header("x-csrf-token", &t)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recovery = enabled["recovery_codes"][0].as_str().unwrap().to_owned();
    // The password hash, as stored.
    let pool = app.raw_pool().await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'secrets@example.com'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    // A message naming where the credential is, so the transcript is not empty.
    chat(&app, &client, "what do you know?").await;

    let (raw, entries) = export(&app, &client).await;
    let account: Value = serde_json::from_slice(&entries["account.json"]).unwrap();
    assert_eq!(account["totp_enabled"], true);
    assert_eq!(account["credentials"][0]["name"], "openai");
    assert!(account["credentials"][0].get("last4").is_none(), "credentials by name only");

    let planted: Vec<(&str, Vec<u8>)> = vec![
        ("password", PASSWORD.as_bytes().to_vec()),
        ("password hash", hash.into_bytes()),
        ("credential", credential.as_bytes().to_vec()),
        ("api key", key.as_bytes().to_vec()),
        ("api key body", key.trim_start_matches("cd_").as_bytes().to_vec()),
        ("gateway token", gateway.as_bytes().to_vec()),
        ("gateway token body", gateway.trim_start_matches("cdg_").as_bytes().to_vec()),
        ("totp secret", totp_raw.clone()),
        ("totp secret base32", totp_b32.as_bytes().to_vec()),
        ("recovery code", recovery.as_bytes().to_vec()),
        ("recovery code plain", recovery.replace('-', "").into_bytes()),
    ];
    let mut all = raw.clone();
    for (name, data) in &entries {
        all.extend_from_slice(name.as_bytes());
        all.extend_from_slice(data);
    }
    for (what, secret) in &planted {
        for form in forms(secret) {
            assert!(!contains(&all, &form), "the export holds the {what} (as {:?})", String::from_utf8_lossy(&form));
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn import_of_openclaw_setup_workspace_round_trips() {
    let app = TestApp::spawn().await;
    let owner = app.client();
    let me = app.signup(&owner, "import@example.com").await;
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let key = api_key(&app, &owner).await;
    // What `openclaw setup` makes, under one top-level folder, with files clawden does not keep.
    let workspace: Vec<(&str, &str)> = vec![
        ("AGENTS.md", "# AGENTS.md\n\nRead SOUL.md first.\n"),
        ("SOUL.md", "# SOUL.md\n\nBe kind, be brief.\n"),
        ("USER.md", "# USER.md\n\nName: Ada\n"),
        ("IDENTITY.md", "# IDENTITY.md\n\n- Name: Pinchy\n- Emoji: \u{1f99e}\n"),
        ("TOOLS.md", "# TOOLS.md\n\nThe camera is called porch.\n"),
        ("HEARTBEAT.md", "# HEARTBEAT.md\n"),
        ("MEMORY.md", "# MEMORY.md\n"),
        ("skills/git/SKILL.md", SKILL),
    ];
    let mut entries: Vec<(String, Vec<u8>)> =
        workspace.iter().map(|(p, t)| (format!("workspace/{p}"), t.as_bytes().to_vec())).collect();
    entries.push(("workspace/BOOTSTRAP.md".into(), b"# BOOTSTRAP.md\n".to_vec()));
    entries.push(("workspace/memory/2026-01-01.md".into(), b"notes".to_vec()));
    entries.push(("workspace/.git/config".into(), b"[core]".to_vec()));
    let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();

    for (archive, kind) in [(tar_gz_of(&borrowed), "tar.gz"), (zip_of(&borrowed), "zip")] {
        let res = reqwest::Client::new()
            .post(app.at(&format!("/api/v1/instances/{instance}/import?replace=true")))
            .bearer_auth(&key)
            .header("content-type", "application/octet-stream")
            .body(archive)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{kind}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["imported"].as_array().unwrap().len(), 8, "{kind}: {body}");
        let ignored: Vec<&str> = body["ignored"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(ignored.contains(&"workspace/BOOTSTRAP.md"), "{ignored:?}");
        assert!(ignored.contains(&"workspace/memory/2026-01-01.md"), "{ignored:?}");
        let stored = files(&app, &key, &instance).await;
        let expected: BTreeMap<String, String> =
            workspace.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())).collect();
        assert_eq!(stored, expected, "{kind}");
    }

    // The whole export, as downloaded, imports into another account's instance unchanged.
    let (raw, _) = export(&app, &owner).await;
    let other = app.client();
    let other_me = app.signup(&other, "copy@example.com").await;
    let copy = other_me["instances"][0]["id"].as_str().unwrap().to_owned();
    let other_key = api_key(&app, &other).await;
    let t = csrf(&app, &other).await;
    let res = other
        .post(app.at(&format!("/api/v1/instances/{copy}/import?replace=true")))
        .header("x-csrf-token", &t)
        .header("content-type", "application/zip")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "session import");
    assert_eq!(files(&app, &other_key, &copy).await, files(&app, &key, &instance).await);

    // The audit log says who imported.
    let audit: Value = owner.get(app.at("/api/v1/audit")).send().await.unwrap().json().await.unwrap();
    assert!(audit.to_string().contains("workspace.import"), "{audit}");
    app.stop().await;
}

fn zip_with_symlink() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    w.add_symlink("SOUL.md", "/etc/passwd", options).unwrap();
    w.finish().unwrap().into_inner()
}

fn tar_with_link(kind: tar::EntryType) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_entry_type(kind);
    h.set_mode(0o777);
    b.append_link(&mut h, "SOUL.md", "/etc/passwd").unwrap();
    b.into_inner().unwrap()
}

#[tokio::test]
async fn hostile_archive_is_refused_cleanly() {
    let app = TestApp::spawn().await;
    let owner = app.client();
    let me = app.signup(&owner, "victim@example.com").await;
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let key = api_key(&app, &owner).await;
    let before = files(&app, &key, &instance).await;

    let zeros = vec![0u8; 10 * 1024 * 1024];
    let big_text = "a".repeat(2 * 1024 * 1024);
    let many: Vec<(String, Vec<u8>)> = (0..300).map(|i| (format!("f{i}.txt"), b"x".to_vec())).collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("dot-dot path", zip_of(&[("SOUL.md", b"ok"), ("../SOUL.md", b"evil")]), 400, "unsafe_path"),
        ("nested dot-dot", zip_of(&[("skills/../../x/SOUL.md", b"evil")]), 400, "unsafe_path"),
        ("absolute path", zip_of(&[("/etc/SOUL.md", b"evil")]), 400, "unsafe_path"),
        ("backslash path", zip_of(&[("..\\SOUL.md", b"evil")]), 400, "unsafe_path"),
        ("zip symlink", zip_with_symlink(), 400, "link_in_archive"),
        ("tar symlink", tar_with_link(tar::EntryType::Symlink), 400, "link_in_archive"),
        ("tar hard link", tar_with_link(tar::EntryType::Link), 400, "link_in_archive"),
        ("zip bomb", zip_of(&[("SOUL.md", &zeros)]), 413, "entry_too_large"),
        ("tar.gz bomb", tar_gz_of(&[("SOUL.md", b"fine"), ("filler.bin", &zeros)]), 413, "archive_too_large"),
        ("huge text", zip_of(&[("SOUL.md", big_text.as_bytes())]), 413, "entry_too_large"),
        ("entry count", zip_of(&many), 400, "too_many_entries"),
        ("not an archive", b"hello, this is not an archive".to_vec(), 415, "unsupported_archive"),
        ("truncated zip", zip_of(&[("SOUL.md", b"x")])[..20].to_vec(), 400, "invalid_archive"),
        ("nothing known", zip_of(&[("notes.txt", b"x")]), 400, "empty_workspace"),
        ("two workspaces", zip_of(&[("a/SOUL.md", b"x"), ("b/SOUL.md", b"y")]), 400, "ambiguous_workspace"),
        (
            "bad skill next to a good file",
            zip_of(&[("SOUL.md", b"new soul"), ("skills/git/SKILL.md", b"no frontmatter")]),
            400,
            "invalid_file",
        ),
        ("binary file", zip_of(&[("SOUL.md", b"a\0b")]), 400, "invalid_file"),
        (
            "over the workspace total",
            zip_of(&[
                ("SOUL.md", "s".repeat(20_000).as_bytes()),
                ("AGENTS.md", "a".repeat(20_000).as_bytes()),
                ("USER.md", "u".repeat(20_000).as_bytes()),
                ("TOOLS.md", b"one too many"),
            ]),
            400,
            "workspace_too_large",
        ),
        ("body over the cap", vec![b'P'; 2 * 1024 * 1024], 413, "payload_too_large"),
    ];
    let program = reqwest::Client::new();
    for (what, body, status, code) in cases {
        let res = program
            .post(app.at(&format!("/api/v1/instances/{instance}/import")))
            .bearer_auth(&key)
            .header("content-type", "application/zip")
            .body(body)
            .send()
            .await
            .unwrap();
        let (got_status, got_code) = error_code(res).await;
        assert_eq!((got_status, got_code.as_str()), (status, code), "{what}");
        assert_eq!(files(&app, &key, &instance).await, before, "{what} changed the workspace");
    }

    // Members with the `user` role cannot import at all; strangers do not see the instance.
    let member = app.client();
    app.signup(&member, "member@example.com").await;
    let t = csrf(&app, &owner).await;
    owner
        .post(app.at(&format!("/api/v1/instances/{instance}/members")))
        .header("x-csrf-token", &t)
        .json(&json!({"email": "member@example.com", "role": "user"}))
        .send()
        .await
        .unwrap();
    let inv: Value = member.get(app.at("/api/v1/invitations")).send().await.unwrap().json().await.unwrap();
    let t = csrf(&app, &member).await;
    member
        .post(app.at(&format!("/api/v1/invitations/{}/accept", inv[0]["id"].as_str().unwrap())))
        .header("x-csrf-token", &t)
        .send()
        .await
        .unwrap();
    let member_key = api_key(&app, &member).await;
    let good = zip_of(&[("SOUL.md", b"member soul")]);
    let res = program
        .post(app.at(&format!("/api/v1/instances/{instance}/import")))
        .bearer_auth(&member_key)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "forbidden".into()));
    let stranger = app.client();
    app.signup(&stranger, "stranger@example.com").await;
    let stranger_key = api_key(&app, &stranger).await;
    let res = program
        .post(app.at(&format!("/api/v1/instances/{instance}/import")))
        .bearer_auth(&stranger_key)
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (404, "not_found".into()));
    assert_eq!(files(&app, &key, &instance).await, before);

    // Refusals are audited.
    let audit: Value =
        owner.get(app.at(&format!("/api/v1/audit?instance_id={instance}"))).send().await.unwrap().json().await.unwrap();
    assert!(audit.to_string().contains("import:unsafe_path"), "{audit}");
    app.stop().await;
}

/// Every text column of every table (migrations' own bookkeeping aside).
async fn text_columns(pool: &sqlx::AnyPool, postgres: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if postgres {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        out.extend(rows);
    } else {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(pool).await.unwrap();
        for t in tables {
            let cols: Vec<String> = sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .fetch_all(pool)
                .await
                .unwrap();
            out.extend(cols.into_iter().map(|c| (t.clone(), c)));
        }
    }
    out.retain(|(t, _)| !t.starts_with("_sqlx") && !t.starts_with("sqlite_"));
    assert!(out.len() > 20, "found the schema: {out:?}");
    out
}

async fn rows_mentioning(pool: &sqlx::AnyPool, postgres: bool, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (table, column) in text_columns(pool, postgres).await {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE $1");
        let n: i64 = sqlx::query_scalar(&sql).bind(format!("%{needle}%")).fetch_one(pool).await.unwrap();
        if n > 0 {
            hits.push(format!("{table}.{column}: {n}"));
        }
    }
    hits
}

#[tokio::test]
async fn deleted_account_leaves_no_rows_and_no_usable_keys() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("error").try_init();
    for db in TestDb::all().await {
        let postgres = db.backend == clawden_store::Backend::Postgres;
        let app = TestApp::spawn_with(db, |_| {}).await;
        let client = app.client();
        let me = app.signup(&client, "leaving@example.com").await;
        let user: UserId = me["id"].as_str().unwrap().parse().unwrap();
        let instance: InstanceId = me["instances"][0]["id"].as_str().unwrap().parse().unwrap();
        // Someone who stays, so deletion is shown to take only what is the leaver's.
        let stays = app.client();
        app.signup(&stays, "stays@example.com").await;
        chat(&app, &stays, "still here").await;

        // Data of every kind: chat, files, usage, credential, API key, gateway token, 2FA.
        chat(&app, &client, "remember me").await;
        let key = api_key(&app, &client).await;
        put_file(&app, &key, &instance.to_string(), "SOUL.md", "soon gone").await;
        let program = reqwest::Client::new();
        let res = program
            .put(app.at("/api/v1/credentials/anthropic"))
            .bearer_auth(&key)
            .json(&json!({"value": "sk-ant-leaving-secret-1234"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        let t = csrf(&app, &client).await;
        let rotated: Value = client
            .post(app.at(&format!("/api/v1/instances/{instance}/gateway-token/rotate")))
            .header("x-csrf-token", &t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let gateway = rotated["token"].as_str().unwrap().to_owned();
        let setup: Value = client
            .post(app.at("/api/v1/auth/totp/setup"))
            .header("x-csrf-token", &t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let secret = data_encoding::BASE32_NOPAD.decode(setup["secret"].as_str().unwrap().as_bytes()).unwrap();
        let code_now = |app: &TestApp| {
            clawden_server::totp::code_for_step(&secret, clawden_server::totp::step_of(app.clock.now_secs())).unwrap()
        };
        let res = client
            .post(app.at("/api/v1/auth/totp/enable"))
            .header("x-csrf-token", &t)
            .json(&json!({"code": code_now(&app)}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        app.clock.advance_secs(30);
        assert!(app.state.keyring.existing_dek(KeyOwner::User(user)).await.unwrap().is_some());
        assert!(app.state.keyring.existing_dek(KeyOwner::Instance(instance)).await.unwrap().is_some());

        // Refused: a bearer credential, a wrong password, a missing or wrong second factor.
        let res = program
            .delete(app.at("/api/v1/account"))
            .bearer_auth(&key)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(res).await, (403, "session_required".into()));
        for (body, code) in [
            (json!({"password": "not-the-password", "totp_code": code_now(&app)}), "invalid_credentials"),
            (json!({"password": PASSWORD}), "totp_required"),
            (json!({"password": PASSWORD, "totp_code": "000000"}), "invalid_credentials"),
        ] {
            let res =
                client.delete(app.at("/api/v1/account")).header("x-csrf-token", &t).json(&body).send().await.unwrap();
            assert_eq!(error_code(res).await, (403, code.into()), "{body}");
        }
        // Without the CSRF token, even the right answers do nothing.
        let res = client
            .delete(app.at("/api/v1/account"))
            .json(&json!({"password": PASSWORD, "totp_code": code_now(&app)}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);

        app.clock.advance_secs(30);
        let res = client
            .delete(app.at("/api/v1/account"))
            .header("x-csrf-token", &t)
            .json(&json!({"password": PASSWORD, "totp_code": code_now(&app)}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.starts_with("clawden_session=;") && cookie.contains("Max-Age=0"), "{cookie}");

        // Nothing works any more: the session, the API key, the gateway token, signing in.
        assert_eq!(client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 401);
        assert_eq!(program.get(app.at("/api/v1/me")).bearer_auth(&key).send().await.unwrap().status(), 401);
        assert_eq!(program.get(app.at("/v1/models")).bearer_auth(&gateway).send().await.unwrap().status(), 401);
        let res = app.login(&app.client(), "leaving@example.com", PASSWORD).await;
        assert_eq!(error_code(res).await, (401, "invalid_credentials".into()));

        // No row anywhere mentions the account, its instance or its email.
        let pool = app.raw_pool().await;
        for needle in [user.to_string(), instance.to_string(), "leaving@example.com".to_owned()] {
            let hits = rows_mentioning(&pool, postgres, &needle).await;
            assert!(
                hits.is_empty(),
                "{needle} is still in {hits:?} ({})",
                if postgres { "postgres" } else { "sqlite" }
            );
        }
        // The one who stays keeps everything.
        assert!(!rows_mentioning(&pool, postgres, "stays@example.com").await.is_empty());
        pool.close().await;
        let stays_me: Value = stays.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
        assert_eq!(stays_me["email"], "stays@example.com");

        // The keys are gone from the key store, so backups of the rows stay sealed forever.
        for owner in [KeyOwner::User(user), KeyOwner::Instance(instance)] {
            assert!(app.state.keyring.key_store().get(&owner.name()).await.unwrap().is_none(), "{}", owner.name());
            assert!(app.state.keyring.existing_dek(owner).await.unwrap().is_none());
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn data_routes_are_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let doc: Value = app.client().get(app.at("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, method) in [
        ("/api/v1/export", "get"),
        ("/api/v1/instances/{id}/import", "post"),
        ("/api/v1/account", "delete"),
        ("/api/v1/usage/history", "get"),
        ("/api/v1/conversations", "delete"),
        ("/api/v1/conversations/{id}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    // Usage history: 30 days by default, zeros included, bounded.
    let client = app.client();
    app.signup(&client, "history@example.com").await;
    let days: Value = client.get(app.at("/api/v1/usage/history")).send().await.unwrap().json().await.unwrap();
    assert_eq!(days.as_array().unwrap().len(), 30);
    assert_eq!(days[0]["messages"], 0);
    chat(&app, &client, "count me").await;
    let days: Value = client.get(app.at("/api/v1/usage/history?days=7")).send().await.unwrap().json().await.unwrap();
    assert_eq!(days.as_array().unwrap().len(), 7);
    assert_eq!(days[6]["messages"], 1, "today is last");
    for bad in ["0", "367", "x"] {
        let res = client.get(app.at(&format!("/api/v1/usage/history?days={bad}"))).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn export_streams_long_histories_whole() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "long@example.com").await;
    let user: UserId = me["id"].as_str().unwrap().parse().unwrap();
    let instance: InstanceId = me["instances"][0]["id"].as_str().unwrap().parse().unwrap();
    let principal = clawden_core::Principal::User { user };
    let store = &app.state.store;
    let c = store.create_conversation(&principal, instance, "long", 100, app.clock.now_millis()).await.unwrap();
    // More than two pages of messages and of audit records, several at the same instant.
    for i in 0..450 {
        store
            .append_user_message(
                &principal,
                c.id,
                &format!("{{\"role\":\"user\",\"content\":\"m{i}\"}}"),
                "2027-01-01",
                10_000,
                5_000 + i / 3,
            )
            .await
            .unwrap();
        let ev = clawden_store::AuditEvent {
            chain: clawden_store::AuditChain::Account(user),
            actor: Some(user),
            instance: None,
            action: format!("test.{i}"),
            target: String::new(),
            outcome: clawden_core::Outcome::Success,
            ip: None,
            at: 5_000 + i / 3,
        };
        store.record(ev).await.unwrap();
    }
    let (_, entries) = export(&app, &client).await;
    let convo: Value = serde_json::from_slice(&entries[&format!("conversations/{}.json", c.id)]).unwrap();
    let messages = convo["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 450);
    assert_eq!(messages[0]["seq"], 1);
    assert_eq!(messages[449]["seq"], 450);
    let transcript = text(&entries, &format!("conversations/{}.md", c.id));
    assert_eq!(transcript.matches("\n## You · ").count(), 450);
    let audit: Value = serde_json::from_slice(&entries["audit.json"]).unwrap();
    let tests: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .filter(|a| a.starts_with("test."))
        .collect();
    assert_eq!(tests.len(), 450, "every audit record, once");
    app.stop().await;
}

#[tokio::test]
async fn account_deletion_guesses_are_rate_limited() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "guess@example.com").await;
    let token = me["csrf_token"].as_str().unwrap().to_owned();
    let mut codes = Vec::new();
    for _ in 0..8 {
        let res = client
            .delete(app.at("/api/v1/account"))
            .header("x-csrf-token", &token)
            .json(&json!({"password": "a-wrong-guess-123"}))
            .send()
            .await
            .unwrap();
        codes.push(error_code(res).await);
    }
    assert_eq!(codes[0], (403, "invalid_credentials".into()));
    assert_eq!(codes.last().unwrap(), &(429, "rate_limited".to_owned()), "{codes:?}");
    // The account is still there.
    assert_eq!(client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 200);
    app.stop().await;
}

/// The dashboard's import form: a multipart upload whose CSRF token is a form field.
#[tokio::test]
async fn dashboard_import_form_imports_and_refuses_cleanly() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "importer@example.com").await;
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let token = me["csrf_token"].as_str().unwrap().to_owned();
    let key = api_key(&app, &client).await;
    let before = files(&app, &key, &instance).await;
    let form = |csrf: Option<&str>, archive: Vec<u8>| {
        let mut form = reqwest::multipart::Form::new();
        if let Some(csrf) = csrf {
            form = form.text("csrf_token", csrf.to_owned());
        }
        form.text("instance", instance.clone())
            .part("archive", reqwest::multipart::Part::bytes(archive).file_name("workspace.zip"))
    };
    let good = zip_of(&[("my-agent/SOUL.md", b"# Soul\nImported by form."), ("my-agent/notes.txt", b"x")]);
    // Without the token nothing happens.
    let res = client.post(app.at("/settings/data/import")).multipart(form(None, good.clone())).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res =
        client.post(app.at("/settings/data/import")).multipart(form(Some("wrong"), good.clone())).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(files(&app, &key, &instance).await, before);
    // A hostile archive: a clear error on the page, nothing changed.
    let hostile = zip_of(&[("../../SOUL.md", b"escape")]);
    let res = client.post(app.at("/settings/data/import")).multipart(form(Some(&token), hostile)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("role=\"alert\""));
    assert_eq!(files(&app, &key, &instance).await, before);
    // The real thing.
    let res = client.post(app.at("/settings/data/import")).multipart(form(Some(&token), good)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("Workspace imported") && page.contains("notes.txt"), "{page}");
    assert_eq!(files(&app, &key, &instance).await["SOUL.md"], "# Soul\nImported by form.");
    // Someone else's instance: not found.
    let other = app.client();
    let other_me = app.signup(&other, "other@example.com").await;
    let res = other
        .post(app.at("/settings/data/import"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("csrf_token", other_me["csrf_token"].as_str().unwrap().to_owned())
                .text("instance", instance.clone())
                .part("archive", reqwest::multipart::Part::bytes(zip_of(&[("SOUL.md", b"mine")])).file_name("w.zip")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    app.stop().await;
}
