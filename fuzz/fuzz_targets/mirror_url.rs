//! Mirror URLs (`minimodel_verifier::mirror_url`) on arbitrary text: the
//! first line as a URL, the second as a redirect's `Location` against
//! it. Never a panic; a URL that parses shows no query in its label,
//! parses again from its own text to itself, and whatever a redirect
//! resolves to is a mirror URL by the same rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::mirror_url::{MirrorUrl, Plain, Scheme};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, location) = text.split_once('\n').unwrap_or((text, ""));
    for plain in [Plain::Refused, Plain::Allowed] {
        let Ok(url) = MirrorUrl::parse(first, plain) else {
            continue;
        };
        assert!(!url.label().contains('?'), "{}", url.label());
        if plain == Plain::Refused {
            assert_eq!(url.scheme(), Scheme::Https);
        }
        let again = MirrorUrl::parse(&url.expose(), plain).expect("its own text parses");
        assert_eq!(again, url);
        assert!(url.chunk_list_url().label().ends_with(".chunk-list"));
        if let Ok(target) = url.join(location, plain) {
            let reparsed = MirrorUrl::parse(&target.expose(), plain).expect("a target parses");
            assert_eq!(reparsed, target);
        }
    }
});
