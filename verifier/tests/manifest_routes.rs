//! Route safety (`docs/manifest-v0.md`, section Routes): one test per
//! refusal kind, and the routes that must keep working.

use minimodel_verifier::route::{MAX_ROUTE_LEN, Route, RouteError};

#[track_caller]
fn refused(text: &str) -> RouteError {
    match Route::parse(text) {
        Ok(route) => panic!("{route} should be refused"),
        Err(error) => error,
    }
}

#[test]
fn metadata_routes_are_accepted() {
    for text in [
        "https://huggingface.co/org/model/blob/main/LICENSE",
        "https://example.org/evidence/run-1",
        "https://example.org",
        "https://example.org/",
        "https://example.org/models/",
        "https://docs.example.org:8443/cards/tiny-llama?lang=en&v=2#license",
        "https://github.com/org/repo/blob/main/README.md#evaluation",
        "https://example.org/a%20b/c~d_e.f,g;h=i:j!k*(l)+m",
        "https://xn--mdle-bpa.example/card",
        "https://example.org/evidence?run=3&page=/results",
    ] {
        let route = Route::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(route.as_str(), text);
        assert_eq!(route.to_string(), text);
        assert_eq!(text.parse::<Route>(), Ok(route));
    }
}

#[test]
fn host_accessor_drops_port_and_path() {
    let route = Route::parse("https://docs.example.org:8443/card?x=1").expect("valid");
    assert_eq!(route.host(), "docs.example.org");
    let route = Route::parse("https://example.org").expect("valid");
    assert_eq!(route.host(), "example.org");
}

#[test]
fn empty_and_oversized_routes_are_refused() {
    assert_eq!(refused(""), RouteError::Empty);
    let long = format!("https://example.org/{}", "a".repeat(MAX_ROUTE_LEN));
    assert_eq!(refused(&long), RouteError::TooLong { len: long.len() });
    let fits = format!("https://example.org/{}", "a".repeat(MAX_ROUTE_LEN - 20));
    assert_eq!(fits.len(), MAX_ROUTE_LEN);
    assert!(Route::parse(&fits).is_ok());
}

#[test]
fn whitespace_control_and_non_ascii_are_refused() {
    for (text, position) in [
        ("https://example.org/a b", 21),
        ("https://example.org/a\tb", 21),
        ("https://example.org/\u{7f}", 20),
        (" https://example.org/", 0),
        ("https://exämple.org/", 10),
    ] {
        assert!(
            matches!(refused(text), RouteError::ForbiddenCharacter { position: p, .. } if p == position),
            "{text}"
        );
    }
}

#[test]
fn schemes_other_than_https_are_refused() {
    for text in [
        "http://example.org/license",
        "HTTPS://example.org/license",
        "ftp://example.org/license",
        "file:///etc/passwd",
        "https:/example.org",
        "//example.org/license",
        "none",
    ] {
        assert_eq!(refused(text), RouteError::NotHttps, "{text}");
    }
}

#[test]
fn userinfo_is_refused() {
    for text in [
        "https://user:pass@example.org/license",
        "https://token@example.org/",
        "https://@example.org/",
        "https://example.org@evil.example/",
    ] {
        let error = refused(text);
        assert_eq!(error, RouteError::Credentials, "{text}");
        assert!(error.to_string().contains("remove the credential"));
    }
}

#[test]
fn credential_query_parameters_are_refused() {
    for name in [
        "token",
        "TOKEN",
        "access_token",
        "auth",
        "key",
        "api_key",
        "apikey",
        "sig",
        "signature",
        "password",
        "secret",
        "credential",
        "X-Amz-Signature",
        "x-amz-credential",
        "X-Goog-Signature",
        "sv",
        "se",
        "hf_token",
        "to%6Ben",
    ] {
        let text = format!("https://example.org/card?lang=en&{name}=abc");
        assert_eq!(
            refused(&text),
            RouteError::CredentialParameter {
                name: name.to_owned()
            },
            "{text}"
        );
    }
    // The error names the parameter, never its value.
    let error = refused("https://example.org/?access_token=s3cr3t");
    assert!(!error.to_string().contains("s3cr3t"));
}

#[test]
fn byte_hosts_are_refused() {
    for text in [
        "https://raw.githubusercontent.com/org/repo/main/LICENSE",
        "https://cdn-lfs.huggingface.co/repos/ab/cd",
        "https://eu.cdn-lfs.hf.co/x",
    ] {
        assert!(
            matches!(refused(text), RouteError::ByteHost { .. }),
            "{text}"
        );
    }
    // A host that merely ends with the same letters is not a subdomain.
    assert!(Route::parse("https://notraw.githubusercontent.com.example.org/").is_ok());
}

#[test]
fn byte_path_segments_are_refused() {
    for (text, segment) in [
        (
            "https://huggingface.co/org/model/resolve/main/README.md",
            "resolve",
        ),
        ("https://github.com/org/repo/raw/main/LICENSE", "raw"),
        (
            "https://github.com/org/repo/releases/download/v1/notes",
            "download",
        ),
        ("https://example.org/Downloads/latest", "Downloads"),
        ("https://example.org/artifacts/tiny", "artifacts"),
        ("https://example.org/chunks/7", "chunks"),
        ("https://example.org/bytes", "bytes"),
        ("https://example.org/re%73olve/x", "re%73olve"),
    ] {
        let error = refused(text);
        assert_eq!(
            error,
            RouteError::BytePathSegment {
                segment: segment.to_owned()
            },
            "{text}"
        );
        assert!(
            error
                .to_string()
                .contains("publish the bytes through seeding instead")
        );
    }
}

#[test]
fn artifact_extensions_are_refused() {
    for (text, extension) in [
        ("https://example.org/models/tiny.slm", ".slm"),
        ("https://example.org/models/tiny.Q8_0.GGUF", ".gguf"),
        ("https://example.org/m/model.safetensors", ".safetensors"),
        ("https://example.org/m/pytorch_model.bin", ".bin"),
        ("https://example.org/m/w.pt", ".pt"),
        ("https://example.org/m/w.pth", ".pth"),
        ("https://example.org/m/w.ckpt", ".ckpt"),
        ("https://example.org/m/w.onnx", ".onnx"),
        ("https://example.org/m/w.h5", ".h5"),
        ("https://example.org/m/w.tflite", ".tflite"),
        ("https://example.org/m/w.npz", ".npz"),
        ("https://example.org/m/w.tar", ".tar"),
        ("https://example.org/m/w.tgz", ".tgz"),
        ("https://example.org/m/w.zip", ".zip"),
        ("https://example.org/m/w.tar.gz", ".gz"),
        ("https://example.org/m/w.zst", ".zst"),
        ("https://example.org/m/w.xz", ".xz"),
        ("https://example.org/m/w.7z", ".7z"),
        ("https://example.org/m/w.slm.part", ".part"),
        ("https://example.org/m/tiny.slm/", ".slm"),
        ("https://example.org/view?file=tiny.gguf", ".gguf"),
    ] {
        assert_eq!(
            refused(text),
            RouteError::ArtifactExtension { extension },
            "{text}"
        );
    }
}

#[test]
fn download_query_parameters_are_refused() {
    for (text, name) in [
        ("https://example.org/card?download=true", "download"),
        ("https://example.org/card?download", "download"),
        ("https://www.dropbox.com/s/abc/card?dl=1", "dl"),
        ("https://github.com/o/r/blob/main/LICENSE?raw=true", "raw"),
        (
            "https://example.org/o?response-content-disposition=x",
            "response-content-disposition",
        ),
        ("https://storage.example.org/o?alt=media", "alt"),
    ] {
        assert_eq!(
            refused(text),
            RouteError::DownloadParameter {
                name: name.to_owned()
            },
            "{text}"
        );
    }
    assert!(Route::parse("https://example.org/o?alt=json").is_ok());
}

#[test]
fn characters_outside_the_route_charset_are_refused() {
    for (text, part) in [
        ("https://example.org/a\\b", "path"),
        ("https://example.org/a\"b", "path"),
        ("https://example.org/a<b>", "path"),
        ("https://example.org/a@b", "path"),
        ("https://example.org/a?b=c|d", "query"),
        ("https://example.org/a#b#c", "fragment"),
    ] {
        assert!(
            matches!(refused(text), RouteError::CharacterNotAllowed { part: p, .. } if p == part),
            "{text}"
        );
    }
}

#[test]
fn malformed_routes_are_refused() {
    for text in [
        "https://",
        "https:///path",
        "https://Example.org/",
        "https://example/",
        "https://example.org./",
        "https://example..org/",
        "https://-example.org/",
        "https://example-.org/",
        "https://exa_mple.org/",
        "https://192.168.1.1/license",
        "https://[::1]/license",
        "https://example.org:/",
        "https://example.org:0/",
        "https://example.org:080/",
        "https://example.org:65536/",
        "https://example.org:443:1/",
        "https://example.org//license",
        "https://example.org/a/../license",
        "https://example.org/./license",
        "https://example.org/%2e%2e/license",
        "https://example.org/a%2fb",
        "https://example.org/a%5cb",
        "https://example.org/a%0ab",
        "https://example.org/a%zz",
        "https://example.org/a%4",
        "https://example.org/a?",
        "https://example.org/a?x=1&&y=2",
        "https://example.org/a?=1",
        "https://example.org/a#",
    ] {
        assert!(
            matches!(refused(text), RouteError::Malformed(_)),
            "{text}: {:?}",
            Route::parse(text)
        );
    }
    let label = "a".repeat(64);
    assert!(matches!(
        refused(&format!("https://{label}.org/")),
        RouteError::Malformed(_)
    ));
}

#[test]
fn serde_carries_routes_as_validated_strings() {
    let route = Route::parse("https://example.org/evidence/run-1").expect("valid");
    let json = serde_json::to_string(&route).expect("serializes");
    assert_eq!(json, "\"https://example.org/evidence/run-1\"");
    assert_eq!(
        serde_json::from_str::<Route>(&json).expect("deserializes"),
        route
    );
    let error = serde_json::from_str::<Route>("\"https://example.org/m.gguf\"")
        .expect_err("byte route refused on deserialize");
    assert!(error.to_string().contains(".gguf"), "{error}");
    assert!(serde_json::from_str::<Route>("\"http://example.org/\"").is_err());
}
