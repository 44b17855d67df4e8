//! What a mirror's response means (`minimodel_swarm::mirror::http`) and
//! the token list (`MINIMODEL_MIRROR_TOKENS`) on arbitrary input: the
//! first two bytes a status, the next sixteen a range and an artifact
//! length, then lines of header values in order (Content-Range,
//! Content-Length, Content-Type, Location, ETag, Last-Modified) and the
//! token list. Never a panic; a parsed Content-Range is well formed, a
//! response taken as the range asked holds exactly that many bytes, and a
//! token list that parses never shows a token in its debug form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::mirror::MirrorTokens;
use minimodel_swarm::mirror::http::{
    ContentRange, ResponseHeaders, Verdict, classify, parse_content_range,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 18 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 600;
    let start = u64::from(u32::from_be_bytes([data[2], data[3], data[4], data[5]]));
    let len = u64::from(u32::from_be_bytes([data[6], data[7], data[8], data[9]])).max(1);
    let artifact = u64::from_be_bytes([
        data[10], data[11], data[12], data[13], data[14], data[15], data[16], data[17],
    ]);
    let Ok(text) = std::str::from_utf8(&data[18..]) else {
        return;
    };
    let mut lines = text.split('\n');
    let mut next = || {
        lines
            .next()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
    };
    let headers = ResponseHeaders {
        content_range: next(),
        content_length: next(),
        content_type: next(),
        location: next(),
        etag: next(),
        last_modified: next(),
    };
    if let Some(range) = &headers.content_range {
        match parse_content_range(range) {
            Some(ContentRange::Bytes { first, last, total }) => {
                assert!(first <= last);
                assert!(total.is_none_or(|total| last < total));
            }
            Some(ContentRange::Unsatisfied { .. }) | None => {}
        }
    }
    let range = start..start.saturating_add(len);
    if let Verdict::Range {
        len: body,
        validators,
    } = classify(status, &headers, &range, artifact, 0)
    {
        assert!(status == 200 || status == 206);
        assert_eq!(body, range.end - range.start);
        assert!(
            validators
                .etag
                .as_ref()
                .is_none_or(|etag| etag.len() <= 256)
        );
    }
    let tokens = next().unwrap_or_default();
    if let Ok(parsed) = MirrorTokens::parse(&tokens) {
        let shown = format!("{parsed:?}");
        let entries: Vec<(&str, &str)> = tokens
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter_map(|entry| entry.split_once('='))
            .collect();
        for (_, token) in &entries {
            // A host name is shown, and may hold the token's text (a host
            // `b.88888888.org` beside a token `88888888`): not a leak. The
            // entries split as the parser splits them: at commas and at any
            // ASCII white space, form feed included.
            let in_a_host = entries.iter().any(|(host, _)| {
                host.to_ascii_lowercase()
                    .contains(&token.to_ascii_lowercase())
            });
            if token.len() > 8 && !in_a_host {
                assert!(!shown.contains(token), "a token shows");
            }
        }
    }
});
