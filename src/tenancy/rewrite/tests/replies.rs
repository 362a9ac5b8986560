//! Reply and push fixing: every `ReplyFix`, in RESP2 and RESP3, byte for
//! byte, and the frames pushed on subscribed connections.

use crate::protocol::Proto;
use crate::tenancy::rewrite::{exec_reply, pushed, reply, ReplyFix};
use bytes::Bytes;

const PREFIX: &[u8] = b"acme:";
const MALFORMED: &[u8] = b"-ERR nearcache: malformed reply from upstream\r\n";
const BOTH: [Proto; 2] = [Proto::Resp2, Proto::Resp3];

/// Asserts that `frame`, fixed per `fix` for a client speaking `proto`, is exactly `want`.
fn check(fix: ReplyFix, proto: Proto, frame: &[u8], want: &[u8]) {
    let got = reply(PREFIX, fix, proto, frame);
    assert_eq!(got, Bytes::copy_from_slice(want), "{fix:?} {proto:?} {:?}", Bytes::copy_from_slice(frame));
}

/// [`check`] in both protocols.
fn check_both(fix: ReplyFix, frame: &[u8], want: &[u8]) {
    for proto in BOTH {
        check(fix, proto, frame, want);
    }
}

/// Asserts that `frame` pushed to tenant `prefix` becomes exactly `want`.
fn check_push(prefix: &[u8], frame: &[u8], want: &[u8]) {
    let got = pushed(prefix, frame);
    assert_eq!(got, Bytes::copy_from_slice(want), "{:?}", Bytes::copy_from_slice(frame));
}

#[test]
fn keys_keeps_only_prefixed_names_stripped() {
    let keys = ReplyFix::Keys;
    check_both(keys, b"*3\r\n$6\r\nacme:a\r\n$8\r\nglobex:b\r\n$7\r\nacme:bc\r\n", b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n");
    // Simple strings stay simple strings, bulks stay bulks.
    check_both(keys, b"*2\r\n+acme:x\r\n$6\r\nacme:y\r\n", b"*2\r\n+x\r\n$1\r\ny\r\n");
    check_both(keys, b"*2\r\n+globex:x\r\n+acme:y\r\n", b"*1\r\n+y\r\n");
    check_both(keys, b"*0\r\n", b"*0\r\n");
    check_both(keys, b"*2\r\n$8\r\nglobex:a\r\n$1\r\nb\r\n", b"*0\r\n");
    // The prefix comes off once, and only at the start; case matters.
    check_both(
        keys,
        b"*4\r\n$10\r\nacme:acme:\r\n$7\r\nxacme:y\r\n$6\r\nACME:z\r\n$5\r\nacme:\r\n",
        b"*2\r\n$5\r\nacme:\r\n$0\r\n\r\n",
    );
    // Binary names, CRLF inside included.
    check_both(keys, b"*1\r\n$9\r\nacme:\r\n\0\xff\r\n", b"*1\r\n$4\r\n\r\n\0\xff\r\n");
    // Non-string elements are not names: dropped.
    check_both(keys, b"*4\r\n:1\r\n$-1\r\n*1\r\n$6\r\nacme:n\r\n$6\r\nacme:k\r\n", b"*1\r\n$1\r\nk\r\n");
    check(keys, Proto::Resp3, b"*2\r\n_\r\n$6\r\nacme:k\r\n", b"*1\r\n$1\r\nk\r\n");
    // A RESP3 set stays a set.
    check(keys, Proto::Resp3, b"~2\r\n$6\r\nacme:a\r\n$6\r\nother:\r\n", b"~1\r\n$1\r\na\r\n");
    // Anything that is not an array passes as it came.
    check_both(keys, b":3\r\n", b":3\r\n");
    check_both(keys, b"$6\r\nacme:k\r\n", b"$6\r\nacme:k\r\n");
}

#[test]
fn scan_strips_the_key_list_and_keeps_the_cursor() {
    let scan = ReplyFix::Scan;
    check_both(
        scan,
        b"*2\r\n$2\r\n17\r\n*3\r\n$6\r\nacme:a\r\n$7\r\nother:b\r\n+acme:c\r\n",
        b"*2\r\n$2\r\n17\r\n*2\r\n$1\r\na\r\n+c\r\n",
    );
    check_both(scan, b"*2\r\n$1\r\n0\r\n*0\r\n", b"*2\r\n$1\r\n0\r\n*0\r\n");
    check_both(scan, b"*2\r\n$1\r\n0\r\n*1\r\n$8\r\nglobex:k\r\n", b"*2\r\n$1\r\n0\r\n*0\r\n");
    // The cursor is never touched, even when it looks like a name.
    check_both(scan, b"*2\r\n$6\r\nacme:9\r\n*1\r\n$6\r\nacme:k\r\n", b"*2\r\n$6\r\nacme:9\r\n*1\r\n$1\r\nk\r\n");
    // A RESP3 set of keys keeps its type.
    check(scan, Proto::Resp3, b"*2\r\n$1\r\n5\r\n~1\r\n$6\r\nacme:k\r\n", b"*2\r\n$1\r\n5\r\n~1\r\n$1\r\nk\r\n");
    // Not [cursor, [keys]]: cannot be checked, so not forwarded.
    check_both(scan, b"*2\r\n$1\r\n0\r\n$6\r\nacme:k\r\n", MALFORMED);
    check_both(scan, b"*1\r\n$1\r\n0\r\n", MALFORMED);
    check_both(scan, b"*3\r\n$1\r\n0\r\n*0\r\n*0\r\n", MALFORMED);
    // Not an array at all: passes (+QUEUED inside MULTI, for one).
    check_both(scan, b"+QUEUED\r\n", b"+QUEUED\r\n");
}

#[test]
fn randomkey_is_stripped_or_becomes_null() {
    let random = ReplyFix::RandomKey;
    check_both(random, b"$6\r\nacme:k\r\n", b"$1\r\nk\r\n");
    check_both(random, b"$5\r\nacme:\r\n", b"$0\r\n\r\n");
    // A foreign name becomes a null in the client's protocol.
    check(random, Proto::Resp2, b"$8\r\nglobex:k\r\n", b"$-1\r\n");
    check(random, Proto::Resp3, b"$8\r\nglobex:k\r\n", b"_\r\n");
    check(random, Proto::Resp2, b"$0\r\n\r\n", b"$-1\r\n");
    check(random, Proto::Resp3, b"$4\r\nacme\r\n", b"_\r\n");
    // An empty database: the null passes as it came.
    check(random, Proto::Resp2, b"$-1\r\n", b"$-1\r\n");
    check(random, Proto::Resp3, b"_\r\n", b"_\r\n");
}

#[test]
fn key_first_strips_the_key_only() {
    let first = ReplyFix::KeyFirst;
    // BLPOP: [key, value]; a value that looks like a name is left alone.
    check_both(first, b"*2\r\n$6\r\nacme:q\r\n$3\r\nval\r\n", b"*2\r\n$1\r\nq\r\n$3\r\nval\r\n");
    check_both(first, b"*2\r\n$6\r\nacme:q\r\n$6\r\nacme:v\r\n", b"*2\r\n$1\r\nq\r\n$6\r\nacme:v\r\n");
    // BZPOPMIN in RESP3: [key, member, double].
    check(first, Proto::Resp3, b"*3\r\n$6\r\nacme:z\r\n$1\r\nm\r\n,1.5\r\n", b"*3\r\n$1\r\nz\r\n$1\r\nm\r\n,1.5\r\n");
    check(
        first,
        Proto::Resp2,
        b"*3\r\n$6\r\nacme:z\r\n$1\r\nm\r\n$3\r\n1.5\r\n",
        b"*3\r\n$1\r\nz\r\n$1\r\nm\r\n$3\r\n1.5\r\n",
    );
    // Timeout: the null array passes.
    check(first, Proto::Resp2, b"*-1\r\n", b"*-1\r\n");
    check(first, Proto::Resp3, b"_\r\n", b"_\r\n");
    // A key without the prefix (never from a sane upstream) cannot be
    // dropped from a fixed-shape reply: it passes as it came.
    check_both(first, b"*2\r\n$7\r\nother:q\r\n$1\r\nv\r\n", b"*2\r\n$7\r\nother:q\r\n$1\r\nv\r\n");
}

#[test]
fn mpop_strips_the_key() {
    let mpop = ReplyFix::MpopKey;
    // LMPOP: [key, [elements]].
    check_both(
        mpop,
        b"*2\r\n$6\r\nacme:l\r\n*2\r\n$1\r\na\r\n$6\r\nacme:b\r\n",
        b"*2\r\n$1\r\nl\r\n*2\r\n$1\r\na\r\n$6\r\nacme:b\r\n",
    );
    // ZMPOP in RESP3: [key, [[member, score]]].
    check(
        mpop,
        Proto::Resp3,
        b"*2\r\n$6\r\nacme:z\r\n*1\r\n*2\r\n$1\r\nm\r\n,2\r\n",
        b"*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nm\r\n,2\r\n",
    );
    check(mpop, Proto::Resp2, b"*-1\r\n", b"*-1\r\n");
    check(mpop, Proto::Resp3, b"_\r\n", b"_\r\n");
}

#[test]
fn streams_strip_each_stream_name() {
    let streams = ReplyFix::Streams;
    // RESP2: [[key, entries], …].
    check(
        streams,
        Proto::Resp2,
        b"*2\r\n*2\r\n$6\r\nacme:s\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$6\r\nacme:v\r\n\
          *2\r\n$6\r\nacme:t\r\n*0\r\n",
        b"*2\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$6\r\nacme:v\r\n\
          *2\r\n$1\r\nt\r\n*0\r\n",
    );
    // RESP3: {key: entries}.
    check(
        streams,
        Proto::Resp3,
        b"%2\r\n$6\r\nacme:s\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$6\r\nacme:v\r\n\
          $6\r\nacme:t\r\n*0\r\n",
        b"%2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$6\r\nacme:v\r\n\
          $1\r\nt\r\n*0\r\n",
    );
    // XREADGROUP: a deleted entry is [id, null].
    check(
        streams,
        Proto::Resp2,
        b"*1\r\n*2\r\n$6\r\nacme:s\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n",
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n",
    );
    check(streams, Proto::Resp2, b"*-1\r\n", b"*-1\r\n");
    check(streams, Proto::Resp3, b"_\r\n", b"_\r\n");
    check(streams, Proto::Resp3, b"%0\r\n", b"%0\r\n");
}

#[test]
fn channels_keep_only_the_tenants() {
    let channels = ReplyFix::Channels;
    check_both(
        channels,
        b"*3\r\n$7\r\nacme:ch\r\n$9\r\nglobex:ch\r\n$9\r\nacme:news\r\n",
        b"*2\r\n$2\r\nch\r\n$4\r\nnews\r\n",
    );
    check_both(channels, b"*0\r\n", b"*0\r\n");
    check_both(channels, b"*1\r\n$9\r\nglobex:ch\r\n", b"*0\r\n");
}

#[test]
fn numsub_keeps_only_the_tenants_pairs() {
    let numsub = ReplyFix::NumSub;
    check(
        numsub,
        Proto::Resp2,
        b"*6\r\n$6\r\nacme:a\r\n:2\r\n$8\r\nglobex:b\r\n:1\r\n$6\r\nacme:c\r\n:0\r\n",
        b"*4\r\n$1\r\na\r\n:2\r\n$1\r\nc\r\n:0\r\n",
    );
    check(
        numsub,
        Proto::Resp3,
        b"%3\r\n$6\r\nacme:a\r\n:2\r\n$8\r\nglobex:b\r\n:1\r\n$6\r\nacme:c\r\n:0\r\n",
        b"%2\r\n$1\r\na\r\n:2\r\n$1\r\nc\r\n:0\r\n",
    );
    check(numsub, Proto::Resp2, b"*0\r\n", b"*0\r\n");
    check(numsub, Proto::Resp3, b"%0\r\n", b"%0\r\n");
    check(numsub, Proto::Resp3, b"%1\r\n$8\r\nglobex:b\r\n:1\r\n", b"%0\r\n");
    // A flat list with a channel but no count cannot be paired.
    check(numsub, Proto::Resp2, b"*3\r\n$6\r\nacme:a\r\n:2\r\n$6\r\nacme:c\r\n", MALFORMED);
}

#[test]
fn errors_and_nulls_pass_unchanged() {
    let frames: [&[u8]; 7] = [
        b"-ERR wrong number of arguments\r\n",
        b"-NOPERM acme:k\r\n",
        b"!9\r\nERR acme:\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"_\r\n",
        b"|1\r\n+a\r\n:1\r\n-ERR x\r\n",
    ];
    for fix in ReplyFix::ALL {
        for frame in frames {
            check_both(fix, frame, frame);
        }
    }
}

/// Inside MULTI every command is answered `+QUEUED` (its real reply comes
/// in EXEC's array): whatever its fix, that passes as it came.
#[test]
fn queued_passes_unchanged_for_every_fix() {
    for fix in ReplyFix::ALL {
        check_both(fix, b"+QUEUED\r\n", b"+QUEUED\r\n");
    }
}

#[test]
fn malformed_frames_become_an_error() {
    let frames: [&[u8]; 8] = [
        b"",
        b"*2\r\n$6\r\nacme:a\r\n",
        b"$6\r\nacme:a\r\n+OK\r\n",
        b"$6\r\nacme\r\n",
        b"?x\r\n",
        b"*1\r\n$6\r\nacme:a",
        b"*x\r\n",
        b"|1\r\n+a\r\n",
    ];
    for fix in ReplyFix::ALL {
        for frame in frames {
            // Without a fix the reply is not read at all.
            let want = if fix == ReplyFix::None { frame } else { MALFORMED };
            check_both(fix, frame, want);
        }
    }
}

#[test]
fn no_fix_copies_the_reply() {
    for frame in [&b"*1\r\n$8\r\nglobex:k\r\n"[..], b"$6\r\nacme:k\r\n", b"%1\r\n$6\r\nacme:k\r\n:1\r\n"] {
        check_both(ReplyFix::None, frame, frame);
    }
}

#[test]
fn resp3_attributes_are_kept() {
    let attr = b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n";
    let with = |value: &[u8]| [&attr[..], value].concat();
    check(ReplyFix::Keys, Proto::Resp3, &with(b"*2\r\n$6\r\nacme:a\r\n$7\r\nother:b\r\n"), &with(b"*1\r\n$1\r\na\r\n"));
    check(ReplyFix::RandomKey, Proto::Resp3, &with(b"$6\r\nacme:k\r\n"), &with(b"$1\r\nk\r\n"));
    check(ReplyFix::RandomKey, Proto::Resp3, &with(b"$7\r\nother:k\r\n"), &with(b"_\r\n"));
    check(
        ReplyFix::Scan,
        Proto::Resp3,
        &with(b"*2\r\n$1\r\n0\r\n*1\r\n$6\r\nacme:k\r\n"),
        &with(b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"),
    );
    check(ReplyFix::KeyFirst, Proto::Resp3, &with(b"_\r\n"), &with(b"_\r\n"));
    // An attribute on the key inside the reply stays with it.
    check(
        ReplyFix::KeyFirst,
        Proto::Resp3,
        &[&b"*2\r\n"[..], attr, b"$6\r\nacme:q\r\n$1\r\nv\r\n"].concat(),
        &[&b"*2\r\n"[..], attr, b"$1\r\nq\r\n$1\r\nv\r\n"].concat(),
    );
    check(
        ReplyFix::Streams,
        Proto::Resp3,
        &[&b"%1\r\n"[..], attr, b"$6\r\nacme:s\r\n*0\r\n"].concat(),
        &[&b"%1\r\n"[..], attr, b"$1\r\ns\r\n*0\r\n"].concat(),
    );
    // An attribute before the key list of SCAN, and before a value, is copied.
    check(
        ReplyFix::Scan,
        Proto::Resp3,
        &[&b"*2\r\n$1\r\n0\r\n"[..], attr, b"*1\r\n$6\r\nacme:k\r\n"].concat(),
        &[&b"*2\r\n$1\r\n0\r\n"[..], attr, b"*1\r\n$1\r\nk\r\n"].concat(),
    );
    check(
        ReplyFix::KeyFirst,
        Proto::Resp3,
        &[&b"*2\r\n$6\r\nacme:q\r\n"[..], attr, b"$1\r\nv\r\n"].concat(),
        &[&b"*2\r\n$1\r\nq\r\n"[..], attr, b"$1\r\nv\r\n"].concat(),
    );
}

#[test]
fn pushed_messages_lose_the_prefix() {
    check_push(
        PREFIX,
        b"*3\r\n$7\r\nmessage\r\n$7\r\nacme:ch\r\n$5\r\nhello\r\n",
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
    );
    // The payload is the tenant's data: never touched.
    check_push(
        PREFIX,
        b"*3\r\n$7\r\nmessage\r\n$7\r\nacme:ch\r\n$6\r\nacme:x\r\n",
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$6\r\nacme:x\r\n",
    );
    check_push(
        PREFIX,
        b"*3\r\n$8\r\nsmessage\r\n$7\r\nacme:ch\r\n$1\r\nx\r\n",
        b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$1\r\nx\r\n",
    );
    check_push(
        PREFIX,
        b"*4\r\n$8\r\npmessage\r\n$6\r\nacme:*\r\n$7\r\nacme:ch\r\n$1\r\nx\r\n",
        b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\nch\r\n$1\r\nx\r\n",
    );
    // Simple strings stay simple strings.
    check_push(PREFIX, b"*3\r\n+message\r\n+acme:ch\r\n+x\r\n", b"*3\r\n+message\r\n+ch\r\n+x\r\n");
}

#[test]
fn pushed_patterns_lose_the_escaped_prefix() {
    // Prefix `a*:`: its patterns went upstream as `a\*:…`, channels as `a*:…`.
    let prefix = b"a*:";
    check_push(
        prefix,
        b"*4\r\n$8\r\npmessage\r\n$8\r\na\\*:foo*\r\n$7\r\na*:foo1\r\n$1\r\np\r\n",
        b"*4\r\n$8\r\npmessage\r\n$4\r\nfoo*\r\n$4\r\nfoo1\r\n$1\r\np\r\n",
    );
    check_push(
        prefix,
        b"*3\r\n$10\r\npsubscribe\r\n$8\r\na\\*:foo*\r\n:1\r\n",
        b"*3\r\n$10\r\npsubscribe\r\n$4\r\nfoo*\r\n:1\r\n",
    );
    check_push(
        prefix,
        b"*3\r\n$12\r\npunsubscribe\r\n$8\r\na\\*:foo*\r\n:0\r\n",
        b"*3\r\n$12\r\npunsubscribe\r\n$4\r\nfoo*\r\n:0\r\n",
    );
    check_push(
        prefix,
        b"*3\r\n$9\r\nsubscribe\r\n$5\r\na*:ch\r\n:1\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
    );
    // A backslash in the prefix is escaped too.
    check_push(
        b"t\\:",
        b"*4\r\n$8\r\npmessage\r\n$6\r\nt\\\\:x?\r\n$5\r\nt\\:xy\r\n$1\r\np\r\n",
        b"*4\r\n$8\r\npmessage\r\n$2\r\nx?\r\n$2\r\nxy\r\n$1\r\np\r\n",
    );
}

#[test]
fn pushed_confirmations_lose_the_prefix() {
    for kind in ["subscribe", "unsubscribe", "ssubscribe", "sunsubscribe"] {
        let frame = format!("*3\r\n${}\r\n{kind}\r\n$7\r\nacme:ch\r\n:1\r\n", kind.len());
        let want = format!("*3\r\n${}\r\n{kind}\r\n$2\r\nch\r\n:1\r\n", kind.len());
        check_push(PREFIX, frame.as_bytes(), want.as_bytes());
    }
    check_push(
        PREFIX,
        b"*3\r\n$10\r\npsubscribe\r\n$6\r\nacme:*\r\n:2\r\n",
        b"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:2\r\n",
    );
    // Unsubscribing with no subscriptions: the channel is a null.
    check_push(PREFIX, b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    check_push(PREFIX, b">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n", b">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n");
}

#[test]
fn resp3_pushes_keep_their_type() {
    check_push(
        PREFIX,
        b">3\r\n$7\r\nmessage\r\n$7\r\nacme:ch\r\n$5\r\nhello\r\n",
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
    );
    check_push(
        PREFIX,
        b">4\r\n$8\r\npmessage\r\n$7\r\nacme:n*\r\n$8\r\nacme:new\r\n$1\r\nx\r\n",
        b">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$3\r\nnew\r\n$1\r\nx\r\n",
    );
    check_push(
        PREFIX,
        b">3\r\n$10\r\nssubscribe\r\n$7\r\nacme:ch\r\n:1\r\n",
        b">3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n",
    );
}

#[test]
fn invalidate_pushes_keep_only_the_tenants_keys() {
    check_push(
        PREFIX,
        b">2\r\n$10\r\ninvalidate\r\n*3\r\n$6\r\nacme:a\r\n$8\r\nglobex:b\r\n$6\r\nacme:c\r\n",
        b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$1\r\nc\r\n",
    );
    check_push(PREFIX, b">2\r\n$10\r\ninvalidate\r\n*1\r\n$8\r\nglobex:b\r\n", b">2\r\n$10\r\ninvalidate\r\n*0\r\n");
    // FLUSHALL / FLUSHDB: a null instead of keys, passed as it came.
    check_push(PREFIX, b">2\r\n$10\r\ninvalidate\r\n_\r\n", b">2\r\n$10\r\ninvalidate\r\n_\r\n");
}

#[test]
fn other_frames_are_not_pushed_messages() {
    for frame in [
        &b"+OK\r\n"[..],
        b":1\r\n",
        b"$7\r\nacme:ch\r\n",
        b"-ERR acme:x\r\n",
        b"*2\r\n$3\r\nfoo\r\n$6\r\nacme:x\r\n",
        b">2\r\n$4\r\npong\r\n$6\r\nacme:x\r\n",
        b"*3\r\n$4\r\npong\r\n$0\r\n\r\n$6\r\nacme:x\r\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"%1\r\n$7\r\nmessage\r\n$7\r\nacme:ch\r\n",
        // Not one complete frame.
        b"*3\r\n$7\r\nmessage\r\n$7\r\nacme:ch\r\n",
        b"*1\r\n$7\r\nmessage\r\n+OK\r\n",
        b"",
    ] {
        check_push(PREFIX, frame, frame);
    }
}

#[test]
fn exec_elements_get_the_fix_of_their_queued_command() {
    let fixes = [ReplyFix::Keys, ReplyFix::None, ReplyFix::KeyFirst, ReplyFix::Info];
    let frame = b"*4\r\n*2\r\n$6\r\nacme:a\r\n$8\r\nglobex:b\r\n:1\r\n*2\r\n$6\r\nacme:q\r\n$1\r\nx\r\n\
                  $44\r\n# Server\r\nredis_version:7.0.15\r\ntcp_port:1\r\n\r\n";
    let want = b"*4\r\n*1\r\n$1\r\na\r\n:1\r\n*2\r\n$1\r\nq\r\n$1\r\nx\r\n\
                 $32\r\n# Server\r\nredis_version:7.0.15\r\n\r\n";
    for proto in BOTH {
        assert_eq!(exec_reply(PREFIX, &fixes, proto, frame), Bytes::copy_from_slice(want));
        for passes in [&b"*-1\r\n"[..], b"_\r\n", b"-EXECABORT x\r\n"] {
            assert_eq!(exec_reply(PREFIX, &fixes, proto, passes), Bytes::copy_from_slice(passes));
        }
        assert_eq!(exec_reply(PREFIX, &fixes, proto, b"*2\r\n:1\r\n"), Bytes::from_static(MALFORMED));
    }
}

#[test]
fn info_keeps_only_the_server_version_and_mode() {
    let body = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nprocess_id:42\r\ntcp_port:6379\r\n\r\n# Keyspace\r\ndb0:keys=9\r\n";
    let kept = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
    let bulk = format!("${}\r\n{body}\r\n", body.len());
    check_both(ReplyFix::Info, bulk.as_bytes(), format!("${}\r\n{kept}\r\n", kept.len()).as_bytes());
    let verbatim = format!("={}\r\ntxt:{body}\r\n", body.len() + 4);
    check(
        ReplyFix::Info,
        Proto::Resp3,
        verbatim.as_bytes(),
        format!("={}\r\ntxt:{kept}\r\n", kept.len() + 4).as_bytes(),
    );
}
