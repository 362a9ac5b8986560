//! Criterion benches for the per-request hot paths: request parsing, reply
//! delimiting and command-table lookup.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use nearcache::commands;
use nearcache::protocol::request::{parse, Limits, Parsed};
use nearcache::protocol::scan::Scanner;
use nearcache::protocol::Args;

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn parsing(c: &mut Criterion) {
    let limits = Limits::default();
    let get = multibulk(&[b"GET", b"key:000000012345"]);
    let set = multibulk(&[b"SET", b"key:000000012345", &[b'x'; 64]]);
    let pipeline: Vec<u8> = std::iter::repeat_n(get.clone(), 16).flatten().collect();
    let (mut args, mut inline) = (Vec::new(), Vec::new());
    let mut group = c.benchmark_group("request_parse");
    group.bench_function("get", |b| b.iter(|| parse(black_box(&get), &limits, &mut args, &mut inline)));
    group.bench_function("set_64b", |b| b.iter(|| parse(black_box(&set), &limits, &mut args, &mut inline)));
    group.throughput(Throughput::Elements(16));
    group.bench_function("pipeline_16_get", |b| {
        b.iter(|| {
            let mut pos = 0;
            while let Ok(Parsed::Multibulk { len }) = parse(&pipeline[pos..], &limits, &mut args, &mut inline) {
                pos += len;
            }
            pos
        })
    });
    group.finish();
}

fn scanning(c: &mut Criterion) {
    let bulk = [&b"$64\r\n"[..], &[b'x'; 64], b"\r\n"].concat();
    let mut array = b"*100\r\n".to_vec();
    (0..100).for_each(|_| array.extend_from_slice(&bulk));
    let mut group = c.benchmark_group("reply_scan");
    group.bench_function("bulk_64b", |b| b.iter(|| Scanner::default().next_frame(black_box(&bulk))));
    group.bench_function("array_100x64b", |b| b.iter(|| Scanner::default().next_frame(black_box(&array))));
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mset = multibulk(&[b"MSET", b"a", b"1", b"b", b"2", b"c", b"3"]);
    let (mut ranges, mut inline) = (Vec::new(), Vec::new());
    let _ = parse(&mset, &Limits::default(), &mut ranges, &mut inline);
    let mut out = Vec::new();
    let mut group = c.benchmark_group("command_table");
    group.bench_function("lookup_get", |b| b.iter(|| commands::lookup(black_box(b"get"))));
    group.bench_function("lookup_zrangebyscore", |b| b.iter(|| commands::lookup(black_box(b"ZRANGEBYSCORE"))));
    group.bench_function("lookup_unknown", |b| b.iter(|| commands::lookup(black_box(b"NOSUCHCOMMAND"))));
    group.bench_function("key_indices_mset", |b| {
        b.iter(|| {
            let (_, cmd) = commands::lookup(b"mset").expect("mset");
            commands::key_indices(cmd, &Args::new(black_box(&mset), &ranges), &mut out)
        })
    });
    group.finish();
}

criterion_group!(benches, parsing, scanning, lookup);
criterion_main!(benches);
