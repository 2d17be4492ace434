//! `web_fetch`: the URL checks made before anything runs, the `curl` command that fetches
//! inside the sandbox through the egress proxy, and the reduction of HTML to text.

use super::Captured;
use clawden_sandbox::egress::{addr, PROXY_PORT};
use clawden_sandbox::EgressPolicy;
use std::time::Duration;
use url::{Host, Url};

/// The line `curl -w` writes to standard error after the transfer.
const MARKER: &str = "clawden-fetch ";

/// Checks a URL before anything runs: http or https, a domain name (never an address literal,
/// never `localhost`), port 80 or 443, no credentials, and a host the instance's egress
/// allowlist matches. The proxy checks all of it again, and the addresses the name resolves to.
pub(super) fn check_url(raw: &str, policy: &EgressPolicy) -> Result<Url, String> {
    let mut url = Url::parse(raw.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("only http and https URLs can be fetched, not {}:", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URLs with a user name or password are refused".into());
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => {
            return Err("IP addresses cannot be fetched; only domain names on the egress allowlist can".into())
        }
        None => return Err("the URL has no host".into()),
    };
    if addr::parse_ip_literal(&host).is_some() {
        return Err("IP addresses cannot be fetched; only domain names on the egress allowlist can".into());
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Err("localhost cannot be fetched".into());
    }
    match url.port_or_known_default() {
        Some(80 | 443) => {}
        _ => return Err("only ports 80 and 443 can be reached".into()),
    }
    if !policy.allows(&host) {
        let list = if policy.allow.is_empty() { "it is empty".to_owned() } else { policy.allow.join(", ") };
        return Err(format!(
            "{host} is not on this instance's egress allowlist ({list}); an owner or admin can add it"
        ));
    }
    url.set_fragment(None);
    Ok(url)
}

/// `curl` arguments: through the sandbox's proxy (always as a `CONNECT` tunnel, so a refusal
/// is the proxy's and never mistaken for the site's answer), at most 5 redirects, http(s) only,
/// bounded in time and size. The URL is an argument of `--url`, never part of a shell string.
pub(super) fn curl_argv(url: &Url, timeout: Duration, body_cap: usize) -> Vec<String> {
    [
        "curl",
        // First, so no `.curlrc` (HOME is the agent-writable workspace) is read.
        "--disable",
        "--silent",
        "--show-error",
        "--proxy",
        &format!("http://127.0.0.1:{PROXY_PORT}"),
        "--proxytunnel",
        "--location",
        "--max-redirs",
        "5",
        "--proto",
        "=http,https",
        "--proto-redir",
        "=http,https",
        "--max-time",
        &timeout.as_secs().max(1).to_string(),
        "--max-filesize",
        &body_cap.to_string(),
        "--user-agent",
        "clawden-web-fetch",
        "--header",
        "Accept: text/html, text/plain;q=0.9, */*;q=0.5",
        "--output",
        "-",
        "--write-out",
        &format!("%{{stderr}}\n{MARKER}%{{http_code}} %{{http_connect}} %{{content_type}}\n"),
        "--url",
        url.as_str(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Turns curl's result into the model's answer.
pub(super) fn report(url: &Url, out: &Captured, max_chars: usize, body_cap: usize) -> Result<String, String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let marker = stderr.lines().rev().find_map(|l| l.strip_prefix(MARKER));
    let mut fields = marker.unwrap_or("").splitn(3, ' ');
    let status: u16 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let connect: u16 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_type = fields.next().unwrap_or("").trim().to_owned();
    let host = url.host_str().unwrap_or("");
    let complaint = stderr.lines().find(|l| l.starts_with("curl:")).unwrap_or("").trim();
    if connect == 403 || complaint.contains("response 403") {
        return Err(format!(
            "the egress proxy refused the connection to {host} (or a redirect's host): it is not on the \
             allowlist, or its name resolves to a private, loopback, link-local or otherwise forbidden address"
        ));
    }
    match out.code {
        0 => {}
        127 => return Err("web_fetch needs curl in the sandbox, and it is not installed there".into()),
        28 | clawden_sandbox::EXIT_TIMEOUT => return Err(format!("fetching {url} timed out")),
        63 => return Err(format!("the response is larger than {body_cap} bytes")),
        47 => return Err("too many redirects (at most 5 are followed)".into()),
        7 => return Err("the sandbox could not reach its egress proxy (this sandbox has no network)".into()),
        code if complaint.is_empty() => return Err(format!("fetching {url} failed (curl exit code {code})")),
        _ => return Err(format!("fetching {url} failed: {complaint}")),
    }
    let ct = content_type.to_ascii_lowercase();
    let body = &out.stdout;
    let looks_html = ct.contains("html") || (ct.is_empty() && body.trim_ascii_start().starts_with(b"<"));
    let text = if looks_html {
        html_to_text(&String::from_utf8_lossy(body))
    } else if ct.starts_with("text/") || ct.contains("json") || ct.contains("xml") || ct.contains("javascript") {
        String::from_utf8_lossy(body).into_owned()
    } else if let Some(t) = super::text_of(body) {
        t
    } else {
        return Err(format!("{url} returned binary content ({content_type}), not text"));
    };
    let mut answer = format!("URL: {url}\nStatus: {status}\nContent-Type: {content_type}\n\n");
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => {
            answer.push_str(&text[..cut]);
            answer.push_str(&format!("\n[cut at {max_chars} characters]"));
        }
        None => answer.push_str(&text),
    }
    if out.stdout_truncated {
        answer.push_str(&format!("\n[the body was cut at {body_cap} bytes]"));
    }
    if status >= 400 {
        Err(answer)
    } else {
        Ok(answer)
    }
}

/// Elements whose content is not text for a reader.
const SKIPPED: [&str; 5] = ["script", "style", "noscript", "template", "svg"];
/// Elements that start a new line.
const BLOCKS: [&str; 27] = [
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "ul",
];

/// Where `needle` (lowercase ASCII) occurs in `hay`, ignoring ASCII case.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Reduces HTML to readable text: scripts, styles and comments dropped, tags removed (block
/// elements and table rows become line breaks), common entities decoded, whitespace collapsed.
pub(super) fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut i = 0;
    // Each round moves `i` forward by at least one byte.
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
            continue;
        }
        let is_tag = rest.starts_with('<')
            && rest[1..].chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?');
        if !is_tag {
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let end = rest[first..].find('<').map_or(rest.len(), |e| e + first);
            decode_entities(&rest[..end], &mut out);
            i += end;
            continue;
        }
        let Some(end) = rest.find('>') else { break };
        let tag = &rest[1..end];
        let closing = tag.starts_with('/');
        let name = tag.trim_start_matches('/').split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or("");
        let name = name.to_ascii_lowercase();
        i += end + 1;
        if !closing && SKIPPED.contains(&name.as_str()) && !tag.ends_with('/') {
            let close = format!("</{name}");
            match find_ci(&html[i..], &close) {
                Some(at) => {
                    let after = i + at;
                    i = html[after..].find('>').map_or(html.len(), |e| after + e + 1);
                }
                None => i = html.len(),
            }
            continue;
        }
        if BLOCKS.contains(&name.as_str()) || name == "tr" || name == "title" || name == "table" {
            out.push('\n');
        } else if name == "td" || name == "th" {
            out.push(' ');
        }
    }
    collapse(&out)
}

fn decode_entities(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest[1..].find(';').filter(|e| *e <= 10).and_then(|e| {
            let name = &rest[1..e + 1];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                "ndash" => Some('–'),
                "mdash" => Some('—'),
                "hellip" => Some('…'),
                "copy" => Some('©'),
                "reg" => Some('®'),
                "lsquo" => Some('‘'),
                "rsquo" => Some('’'),
                "ldquo" => Some('“'),
                "rdquo" => Some('”'),
                _ => {
                    let num = name.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            };
            c.map(|c| (c, e + 2))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

/// Collapses runs of spaces in each line, trims lines, and drops empty ones.
fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        for (n, word) in words.enumerate() {
            if n > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> EgressPolicy {
        EgressPolicy { allow: allow.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn only_allowlisted_domain_names_on_web_ports_pass() {
        let p = policy(&["docs.example.com", "*.allowed.test"]);
        assert_eq!(check_url("https://docs.example.com/a#frag", &p).unwrap().as_str(), "https://docs.example.com/a");
        assert!(check_url("http://www.allowed.test/", &p).is_ok());
        for (url, why) in [
            ("ftp://docs.example.com/", "only http"),
            ("file:///etc/passwd", "only http"),
            ("http://127.0.0.1/", "IP addresses"),
            ("http://2130706433/", "IP addresses"),
            ("http://0x7f.1/", "IP addresses"),
            ("http://[::1]/", "IP addresses"),
            ("http://169.254.169.254/latest/meta-data", "IP addresses"),
            ("http://localhost/", "localhost"),
            ("http://a.localhost/", "localhost"),
            ("http://docs.example.com:8080/", "ports 80 and 443"),
            ("http://user:pw@docs.example.com/", "user name"),
            ("https://evil.example/", "not on this instance's egress allowlist"),
            ("https://allowed.test/", "not on this instance's egress allowlist"),
            ("not a url", "not a valid URL"),
        ] {
            let e = check_url(url, &p).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn html_is_reduced_to_text() {
        let html = "<!DOCTYPE html><html><head><title>T &amp; t</title><style>p{color:red}</style>\
                    <script>var x = '<p>no</p>';</script></head><body><!-- hidden --><h1>Hello</h1>\
                    <p>one&nbsp;&lt;two&gt;   three &#8212; &#x41;</p><SCRIPT>alert(1)</SCRIPT>\
                    <ul><li>a</li><li>b</li></ul>x < y &unknown; &amp</body></html>é<b>ü</b>";
        assert_eq!(html_to_text(html), "T & t\nHello\none <two> three — A\na\nb\nx < y &unknown; &ampéü");
    }
}
