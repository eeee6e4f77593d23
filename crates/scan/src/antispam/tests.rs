use super::*;

const CLEAN: &[u8] = b"Subject: hello\r\nFrom: a@b.test\r\nTo: c@d.test\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nhi there\r\n";

const SWAKS: &[u8] = b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nTo: user@example.test\r\nFrom: user@host.test\r\nSubject: test Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-Id: <20240101100000.012345@host.test>\r\nX-Mailer: swaks v20240103.0 jetmore.org/john/code/swaks/\r\n\r\nThis is a test mailing\r\n\r\n";

fn rules(text: &str) -> (RuleSet, Vec<RuleError>) {
    RuleSet::compile(&[SourceFile { name: "test.cf".to_owned(), bytes: text.as_bytes().to_vec() }])
}

fn compiled(text: &str) -> RuleSet {
    let (set, errors) = rules(text);
    assert_eq!(errors, vec![], "rules should compile");
    set
}

#[test]
fn builtin_rules_compile_without_errors() {
    let file = SourceFile { name: "default.cf".to_owned(), bytes: DEFAULT_RULES.as_bytes().to_vec() };
    let (set, errors) = RuleSet::compile(&[file]);
    assert_eq!(errors, vec![]);
    assert_eq!(set.skipped(), 0);
    assert!((8..=15).contains(&set.len()), "{} rules", set.len());
    assert_eq!(RuleSet::builtin().len(), set.len());
    for rule in &set.rules {
        assert!(rule.description.is_some(), "{} has no describe", rule.name);
        assert!(rule.score > 0.0 && rule.score < REQUIRED_SCORE, "{} scores {}", rule.name, rule.score);
    }
}

#[test]
fn clean_message_scores_low_with_builtin_rules() {
    let verdict = RuleSet::builtin().check(CLEAN);
    assert!(verdict.score < 1.0, "{verdict:?}");
    assert!(verdict.scl < 7);
    assert!(!verdict.gtube);
}

#[test]
fn swaks_test_message_is_not_spam() {
    let verdict = RuleSet::builtin().check(SWAKS);
    assert!(verdict.scl < 7, "{verdict:?}");
    assert!(verdict.score < 1.0, "{verdict:?}");
}

#[test]
fn spammy_message_hits_builtin_rules() {
    let msg = b"Subject: BUY NOW!!!\r\nFrom: x@y.test\r\n\r\nCheap VIAGRA and cialis, 100% free money. Click here. To unsubscribe reply STOP.\r\n";
    let verdict = RuleSet::builtin().check(msg);
    for rule in [
        "MISSING_DATE",
        "MISSING_MID",
        "SUBJ_ALL_CAPS",
        "SUBJ_EXCLAIM",
        "DRUGS_ERECTILE",
        "FREE_MONEY",
        "CLICK_HERE_UNSUB",
    ] {
        assert!(verdict.hits.iter().any(|h| h == rule), "{rule} should hit: {verdict:?}");
    }
    assert!(verdict.scl >= 7, "{verdict:?}");
}

#[test]
fn gtube_in_raw_or_decoded_body() {
    let raw = format!("Subject: t\r\n\r\n{GTUBE}\r\n");
    let verdict = RuleSet::builtin().check(raw.as_bytes());
    assert!(verdict.gtube);
    assert_eq!(verdict.scl, 9);
    assert_eq!(verdict.hits[0], "GTUBE");
    assert!(verdict.score >= 1000.0);

    // Base64 of the GTUBE string: only the decoded body contains it.
    let encoded = "WEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJELUFOVEktVUJFLVRFU1QtRU1BSUwqQy4zNFg=";
    let msg =
        format!("Subject: t\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n");
    let verdict = RuleSet::compile(&[]).0.check(msg.as_bytes());
    assert!(verdict.gtube, "{verdict:?}");
    assert_eq!(verdict.hits, vec!["GTUBE".to_owned()]);
    assert_eq!(verdict.score, 1000.0);
}

#[test]
fn scl_mapping() {
    let cases = [
        (f64::NAN, 0),
        (f64::NEG_INFINITY, 0),
        (-3.0, 0),
        (0.0, 0),
        (0.7, 0),
        (0.72, 1),
        (REQUIRED_SCORE, 7),
        (4.99, 6),
        (6.0, 8),
        (6.43, 9),
        (1000.0, 9),
        (f64::INFINITY, 9),
    ];
    for (score, scl) in cases {
        assert_eq!(scl_of(score), scl, "score {score}");
    }
}

#[test]
fn header_rules_match_decoded_unfolded_values() {
    let set = compiled(
        "header SUBJ_CAFE Subject =~ /café au lait/\n\
         header XA_BOTH X-A =~ /^one\\ntwo$/\n\
         header NOT_FOO Subject !~ /foo/\n\
         header HAS_XA exists:x-a\n\
         header HAS_XB exists:X-B\n\
         header CASE subject =~ /CAFé/i\n\
         header NO_FOLD subject =~ /cafÉ/i\n",
    );
    let msg = b"Subject: =?utf-8?q?caf=C3=A9?= au\r\n lait\r\nX-A: one\r\nX-A: two\r\n\r\nbody\r\n";
    let verdict = set.check(msg);
    // A rule's non-ASCII characters are their UTF-8 bytes, as SpamAssassin reads rule files: `/i` folds
    // ASCII letters only, so É does not match é.
    assert_eq!(verdict.hits, vec!["SUBJ_CAFE", "XA_BOTH", "NOT_FOO", "HAS_XA", "CASE"]);
    assert_eq!(verdict.score, 5.0);
    assert_eq!(verdict.scl, 7);
}

#[test]
fn absent_headers_and_if_unset() {
    let set = compiled(
        "header MISSING_DATE Date =~ /^UNSET$/ [if-unset: UNSET]\n\
         header EMPTY_NEG X-None !~ /./\n\
         header EMPTY_POS X-None =~ /./\n\
         header PRESENT_NEG Subject !~ /x/ [if-unset: x]\n",
    );
    // An absent header without if-unset hits neither =~ nor !~, as in SpamAssassin.
    let verdict = set.check(b"Subject: hello\r\n\r\nbody\r\n");
    assert_eq!(verdict.hits, vec!["MISSING_DATE", "PRESENT_NEG"]);
    let verdict = set.check(b"Subject: x\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nX-None: \r\n\r\nbody\r\n");
    assert_eq!(verdict.hits, vec!["EMPTY_NEG"]);
}

#[test]
fn all_and_tocc() {
    let set = compiled("header ALL_X ALL =~ /^X-Spam-Flag: yes$/m\nheader TOCC ToCc =~ /a@b\\n.*c@d/\n");
    let verdict = set.check(b"To: a@b\r\nCc: c@d\r\nX-Spam-Flag: yes\r\n\r\n.\r\n");
    assert_eq!(verdict.hits, vec!["ALL_X", "TOCC"]);
}

#[test]
fn body_rules_see_subject_and_decoded_parts_once() {
    let set = compiled(
        "body SUBJ_IN_BODY /^Greetings$/m\n\
         body QP_WORD /naïve/\n\
         body HTML_TEXT /bold words/\n\
         body TWICE /repeat/\n\
         body ABSENT /nowhere/\n\
         score TWICE 2.5\n",
    );
    let msg = concat!(
        "Subject: Greetings\r\nMIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n",
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
        "na=C3=AFve repeat repeat\r\n",
        "--b\r\nContent-Type: text/html\r\n\r\n<p><b>bold</b> words</p>\r\n",
        "--b--\r\n"
    );
    let verdict = set.check(msg.as_bytes());
    assert_eq!(verdict.hits, vec!["SUBJ_IN_BODY", "QP_WORD", "HTML_TEXT", "TWICE"]);
    assert_eq!(verdict.score, 5.5);
}

#[test]
fn latin1_body_is_charset_converted() {
    let set = compiled("body CAFE /café/\n");
    let msg = b"Subject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n";
    assert_eq!(set.check(msg).hits, vec!["CAFE"]);
}

#[test]
fn scores_use_the_first_of_four_and_default_to_one() {
    let set = compiled(
        "score LATE 0.5\n\
         body LATE /a/\n\
         body DEFAULTED /b/\n\
         body FOUR /c/\n\
         score FOUR 2.0 3.0 4.0 5.0\n\
         score NOBODY 9\n\
         describe FOUR Four scores\n\
         describe NOBODY nothing\n",
    );
    assert_eq!(set.len(), 3);
    assert_eq!(set.score("LATE"), Some(0.5));
    assert_eq!(set.score("DEFAULTED"), Some(1.0));
    assert_eq!(set.score("FOUR"), Some(2.0));
    assert_eq!(set.score("NOBODY"), None);
    assert_eq!(set.description("FOUR"), Some("Four scores"));
    let verdict = set.check(b"Subject: abc\r\n\r\n\r\n");
    assert_eq!(verdict.score, 3.5);
}

#[test]
fn zero_score_and_subrules_never_hit() {
    let set =
        compiled("body OFF /a/\nscore OFF 0\nbody __SUB /a/\nbody ON /a/\nheader HOFF Subject =~ /a/\nscore HOFF 0\n");
    assert_eq!(set.len(), 4);
    assert_eq!(set.check(b"Subject: a\r\n\r\na\r\n").hits, vec!["ON"]);
}

#[test]
fn negative_scores_count() {
    let set = compiled("body GOOD /a/\nscore GOOD -2\nbody BAD /b/\n");
    let verdict = set.check(b"Subject: ab\r\n\r\n\r\n");
    assert_eq!(verdict.score, -1.0);
    assert_eq!(verdict.scl, 0);
}

#[test]
fn regex_delimiters_and_flags() {
    let set = compiled(
        "body BRACES m{a/b}i\n\
         body BANG m!c\\!d!\n\
         body SLASH /e\\/f/\n\
         body EXT /g \\s+ h/x\n\
         body DOT /i.j/s\n\
         body GO /k/go\n\
         body HASH /l\\#m/\n",
    );
    let verdict = set.check(b"Subject: x\r\n\r\nA/B c!d e/f g  h i\nj k l#m\r\n");
    assert_eq!(verdict.hits, vec!["BRACES", "BANG", "SLASH", "EXT", "DOT", "GO", "HASH"]);
}

#[test]
fn comments_and_blank_lines() {
    let set = compiled("# a comment\n\n   \nbody A /x/  # trailing comment\r\ndescribe A Has x # not this\n");
    assert_eq!(set.len(), 1);
    assert_eq!(set.description("A"), Some("Has x"));
}

#[test]
fn plugin_only_rules_and_false_blocks_are_skipped_and_counted() {
    let set = compiled(
        "ifplugin Mail::SpamAssassin::Plugin::X\nbody IN_X /x/\nmeta M_X IN_X\nendif\n\
         header E eval:check_for_missing_to_header()\nbody EB eval:foo()\nheader MOD From:host =~ /x/\n\
         mimeheader MH Content-Type =~ /x/\naskdns AD _SENDERDOMAIN_ A /x/\n\
         if (version >= 9.0)\nbody NEW /x/\nelse\nbody OLD /x/\nendif\n\
         if !plugin(Mail::SpamAssassin::Plugin::X)\nbody NO_X /x/\nendif\n\
         lang de describe OLD Alt\nfreemail_domains example.test\nbody A /x/\n",
    );
    assert_eq!(set.len(), 3, "OLD, NO_X and A load");
    assert_eq!(set.skipped(), 8);
    let stats = set.stats();
    assert_eq!(stats.skipped[load::reason::CONDITIONAL], 3);
    assert_eq!(stats.skipped[load::reason::EVAL], 2);
    assert_eq!(stats.skipped[load::reason::PLUGIN_TYPE], 2);
    assert_eq!(stats.skipped[load::reason::MODIFIER], 1);
    assert_eq!(stats.ignored_settings, 2);
    assert_eq!(set.check(b"Subject: s\r\n\r\nx\r\n").hits, vec!["OLD", "NO_X", "A"]);
}

#[test]
fn broken_rules_are_reported_and_skipped() {
    let (set, errors) = rules(
        "body GOOD1 /ok/\n\
         body LOOK /\\Ga/\n\
         header NOREGEX Subject\n\
         header X\n\
         body BADCLASS /[a-/\n\
         body UNTERMINATED /abc\n\
         body BADFLAG /a/q\n\
         header OP Subject == /a/\n\
         header TRAIL Subject =~ /a/ junk\n\
         body bad-name /a/\n\
         score GOOD1 lots\n\
         body\n\
         body GOOD2 /ok/\n",
    );
    assert_eq!(set.len(), 2);
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert_eq!(errors[0].rule.as_deref(), Some("LOOK"));
    assert_eq!(errors[0].file, "test.cf");
    assert!(errors[0].reason.contains("\\G is not supported"), "{}", errors[0].reason);
    assert_eq!(errors[10].rule, None);
    for error in &errors {
        assert!(!error.reason.contains('\n'), "{error}");
    }
    assert!(errors[0].to_string().starts_with("test.cf:2: rule LOOK: "));
    assert_eq!(errors[10].to_string(), "test.cf:12: missing rule name");
}

#[test]
fn later_definition_replaces_earlier() {
    let set = compiled("body A /x/\nbody B /y/\nbody A /z/\n");
    assert_eq!(set.len(), 2);
    assert_eq!(set.check(b"Subject: s\r\n\r\nx y z\r\n").hits, vec!["A", "B"]);
    assert_eq!(set.check(b"Subject: s\r\n\r\nx\r\n").hits, Vec::<String>::new());
}

#[test]
fn rules_across_files() {
    let a = SourceFile { name: "a.cf".to_owned(), bytes: b"body A /x/\n".to_vec() };
    let b = SourceFile { name: "b.cf".to_owned(), bytes: b"score A 3\nbody B /(/\n".to_vec() };
    let (set, errors) = RuleSet::compile(&[a, b]);
    assert_eq!(set.score("A"), Some(3.0));
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].file.as_str(), errors[0].line), ("b.cf", 2));
}

#[test]
fn unparseable_message_is_scanned_raw() {
    let set = compiled("body RAW /secret words/\nheader S Subject =~ /^$/ [if-unset: ]\n");
    let verdict = set.check(b"\x00\xff garbage with secret words in it");
    assert_eq!(verdict.hits, vec!["RAW", "S"]);
}

#[test]
fn body_rules_see_only_the_first_256k() {
    let set = compiled("body LATE /needle/\nbody EARLY /start/\n");
    let mut msg = b"Subject: s\r\n\r\nstart ".to_vec();
    msg.extend(std::iter::repeat_n(b'a', crate::mime::BODY_TEXT_LIMIT));
    msg.extend_from_slice(b" needle\r\n");
    assert_eq!(set.check(&msg).hits, vec!["EARLY"]);
}

#[test]
fn rule_set_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
}

#[test]
fn rawbody_uri_and_full_rules() {
    let set = compiled(
        "rawbody RAW_TAG /<font\\s+color=\"?red/i\n\
         body RENDERED_TAG /<font/\n\
         body RENDERED_TEXT /^big sale$/\n\
         uri URI_IP m{^https?://\\d+\\.\\d+\\.\\d+\\.\\d+}\n\
         uri URI_WWW /^http:\\/\\/www\\.shop\\.test/\n\
         full FULL_HDR /^X-Mailer: spamkit\\b/m\n\
         full FULL_B64 /YmlnIHNhbGU/\n",
    );
    let msg = concat!(
        "Subject: s\r\nX-Mailer: spamkit 2\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        // <font color=red>big sale</font> <a href="http://10.1.2.3/x">x</a> www.shop.test
        "PGZvbnQgY29sb3I9cmVkPmJpZyBzYWxlPC9mb250PiA8YSBocmVmPSJodHRwOi8vMTAuMS4yLjMveCI+eDwvYT4gd3d3LnNob3AudGVzdA==\r\n"
    );
    let verdict = compiled_check(&set, msg);
    assert_eq!(verdict, vec!["RAW_TAG", "URI_IP", "URI_WWW", "FULL_HDR"]);
}

fn compiled_check(set: &RuleSet, msg: &str) -> Vec<String> {
    set.check(msg.as_bytes()).hits
}

#[test]
fn body_lines_are_paragraphs_and_nosubject() {
    let set = compiled(
        "body PARA /^second paragraph starts$/\n\
         body JOINED /one two three/\n\
         body SUBJ /^Limited offer/\n\
         body SUBJ_NOT /^Limited offer/\n\
         tflags SUBJ_NOT nosubject\n",
    );
    let msg = "Subject: Limited offer\r\n\r\none\r\ntwo   three\r\n\r\nsecond paragraph starts\r\n";
    assert_eq!(compiled_check(&set, msg), vec!["PARA", "JOINED", "SUBJ"]);
}

#[test]
fn meta_rules_combine_hit_counts() {
    let set = compiled(
        "body __A /alpha/\n\
         body __B /beta/\n\
         body __C /gamma/\n\
         body __MANY /x/\n\
         tflags __MANY multiple maxhits=3\n\
         meta AND __A && __B\n\
         meta NOT __A && !__C\n\
         meta SUM (__A + __B + __C) >= 2\n\
         meta COUNT __MANY > 2\n\
         meta COUNT_CAPPED __MANY > 3\n\
         meta OF_META AND && NOT\n\
         meta UNDEF __NOBODY || __A\n\
         meta ZERO_META __A\n\
         score ZERO_META 0\n\
         score AND 1.5\n",
    );
    let verdict = set.check(b"Subject: s\r\n\r\nalpha beta x x x x x\r\n");
    assert_eq!(verdict.hits, vec!["AND", "NOT", "SUM", "COUNT", "OF_META", "UNDEF"]);
    assert_eq!(verdict.score, 6.5);
    let (_, errors) = rules("meta LOOP1 LOOP2\nmeta LOOP2 LOOP1\nmeta BAD (A &&\n");
    let reasons: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.rule.clone().unwrap(), e.reason)).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("LOOP1: meta rule depends on itself")), "{reasons:?}");
}

#[test]
fn subrules_run_only_for_scored_metas() {
    let set = compiled("body __USED /a/\nbody __UNUSED /b/\nmeta M __USED\nmeta OFF __UNUSED\nscore OFF 0\n");
    let stats = set.stats();
    assert_eq!(stats.loaded, 4);
    assert_eq!(stats.active, 2, "M and __USED: {stats:?}");
}

#[test]
fn default_scores_follow_spamassassin() {
    let set = compiled("body PLAIN /a/\nbody T_TESTING /a/\nbody GOOD /a/\ntflags GOOD nice\n");
    assert_eq!(set.score("PLAIN"), Some(1.0));
    assert_eq!(set.score("T_TESTING"), Some(0.01));
    assert_eq!(set.score("GOOD"), Some(-1.0));
    assert_eq!(set.check(b"Subject: s\r\n\r\na\r\n").score, 0.01);
}

#[test]
fn replace_tags_expand_in_listed_rules_only() {
    let set = compiled(
        "replace_tag V (?:v|\\\\/)\nreplace_tag I (?:i|1|l)\nreplace_inter W1 [\\s.]?\n\
         body FUZZY /<inter W1><V><I>agra/i\nreplace_rules FUZZY\nbody LITERAL /<V>x/\n",
    );
    assert_eq!(compiled_check(&set, "Subject: s\r\n\r\nbuy v.1agra\r\n"), vec!["FUZZY"]);
    assert_eq!(compiled_check(&set, "Subject: s\r\n\r\nbuy <V>x\r\n"), vec!["LITERAL"]);
}

#[test]
fn look_around_rules_run_on_the_backtracking_engine() {
    let set = compiled(
        "body FREE /\\bfree(?!dom)\\b/i\nbody REPEAT /\\b(\\w+) \\1\\b/\nheader NOT_ME From =~ /(?<!trusted\\.)example\\.test/\n",
    );
    assert_eq!(set.stats().backtracking, 3);
    let hits = compiled_check(&set, "From: a@mail.example.test\r\nSubject: s\r\n\r\nfree the the gift\r\n");
    assert_eq!(hits, vec!["FREE", "REPEAT", "NOT_ME"]);
    let hits = compiled_check(&set, "From: a@trusted.example.test\r\nSubject: s\r\n\r\nfreedom of the press\r\n");
    assert!(hits.is_empty(), "{hits:?}");
}

#[test]
fn prefilter_never_changes_a_verdict() {
    // The same rules with and without literals to prefilter on give the same hits: a rule whose
    // literal is absent cannot match, and one whose literal is present still runs its regex.
    let set = compiled(
        "body LIT /cheap\\s+(?:pills|meds)/i\nbody NOLIT /\\d{3}-\\d{4}/\nheader H Subject =~ /urgent/i\n\
         header NEG Subject !~ /newsletter/\n",
    );
    let stats = set.stats();
    assert_eq!((stats.prefiltered, stats.always), (2, 2), "{stats:?}");
    let hits = compiled_check(&set, "Subject: URGENT\r\n\r\nCHEAP   Meds at 555-1234\r\n");
    assert_eq!(hits, vec!["LIT", "NOLIT", "H", "NEG"]);
    let hits = compiled_check(&set, "Subject: our newsletter\r\n\r\ncheap pillows\r\n");
    assert!(hits.is_empty(), "{hits:?}");
}

#[test]
fn rules_on_one_header_share_a_regex_set_over_its_value() {
    // No literal: the two plain rules share a set over From's value; the negated and if-unset rules
    // can hit without a match, so they run on every message.
    let set = compiled(
        "header F_DIGIT From =~ /^\\d{3}/\nheader F_RUN From =~ /[bcdfg]{3}/\nheader F_NEG From !~ /\\d/\n\
         header XU X-Unset =~ /^un/ [if-unset: unset]\n",
    );
    let stats = set.stats();
    assert_eq!((stats.prefiltered, stats.always), (2, 2), "{stats:?}");
    assert_eq!(compiled_check(&set, "From: 123bcd@x.test\r\n\r\nb\r\n"), vec!["F_DIGIT", "F_RUN", "XU"]);
    assert_eq!(compiled_check(&set, "From: abc@x.test\r\n\r\nb\r\n"), vec!["F_NEG", "XU"]);
    assert_eq!(compiled_check(&set, "Subject: bcdf 1\r\n\r\nb\r\n"), vec!["XU"], "no From: no From rule");
}

#[test]
fn slowest_rules_are_timed_on_sampled_messages() {
    let set = compiled("body A /a+b/\nbody B /zzz/\n");
    assert!(set.slowest(5).is_empty());
    for _ in 0..SAMPLE_EVERY {
        set.check(b"Subject: s\r\n\r\naaab zzz\r\n");
    }
    let slowest = set.slowest(5);
    assert_eq!(slowest.len(), 2, "{slowest:?}");
    assert!(slowest.iter().all(|t| t.runs == 1), "one message in {SAMPLE_EVERY} is timed: {slowest:?}");
}

#[test]
fn relay_pseudo_header_rules_are_not_prefiltered_away() {
    let set = compiled("header __RDNS_NONE X-Spam-Relays-External =~ /^[^\\]]+ rdns= /\nmeta RDNS_NONE __RDNS_NONE\n");
    let msg =
        "Received: from x.test ([192.0.2.5]) by mx.test; Mon, 1 Jan 2024 10:00:00 +0000\r\nSubject: s\r\n\r\nb\r\n";
    assert_eq!(compiled_check(&set, msg), vec!["RDNS_NONE"]);
    let named = "Received: from x.test (x.test [192.0.2.5]) by mx.test; Mon, 1 Jan 2024 10:00:00 +0000\r\nSubject: s\r\n\r\nb\r\n";
    assert!(compiled_check(&set, named).is_empty());
}

#[test]
fn a_rule_with_a_back_reference_in_the_middle_hits_through_the_rule_set() {
    // From equals To, with the Date header between them: the back-reference is followed by more pattern.
    let set =
        compiled("header FROM_IS_TO ALL =~ /\\nFrom: (\\S+)\\n(?:[^\\n]+\\n)*To: \\1\\n/ism\nscore FROM_IS_TO 2.0\n");
    let same = b"Subject: s\r\nFrom: a@b.test\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nTo: a@b.test\r\n\r\nhi\r\n";
    assert!(set.check(same).hits.iter().any(|h| h == "FROM_IS_TO"), "{:?}", set.check(same));
    let other = b"Subject: s\r\nFrom: a@b.test\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nTo: c@d.test\r\n\r\nhi\r\n";
    assert!(set.check(other).hits.is_empty(), "{:?}", set.check(other));
}

#[test]
fn a_short_line_anchored_rule_counts_the_same_lines_in_a_long_paragraph_body() {
    // One long paragraph then two one-word lines: the line-by-line search and the counting it feeds a meta.
    let set = compiled(
        "body __WORD_LINE /^\\s?\\S{1,60}\\s?$/\ntflags __WORD_LINE multiple maxhits=3\n\
         meta TWO_WORD_LINES __WORD_LINE > 1\nscore TWO_WORD_LINES 1.0\n\
         meta THREE_WORD_LINES __WORD_LINE > 2\nscore THREE_WORD_LINES 1.0\n",
    );
    let paragraph = "word ".repeat(800);
    let two = format!("From: a@b.test\r\n\r\nalone\r\n\r\n{paragraph}\r\n\r\nagain\r\n");
    let verdict = set.check(two.as_bytes());
    assert_eq!(verdict.hits, vec!["TWO_WORD_LINES"], "{verdict:?}");
    let one = format!("From: a@b.test\r\n\r\n{paragraph}\r\n\r\nalone\r\n");
    assert!(set.check(one.as_bytes()).hits.is_empty());
}
