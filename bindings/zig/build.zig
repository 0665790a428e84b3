//! The goo-memory Zig package: the module `goo_memory` (goo_memory.zig), linked against the
//! static library the cargo build leaves (libgoo_memory.a), with the C API translated from the
//! repository's headers (include/), so the ABI types come from the headers themselves.
//!
//!   cargo build --release -p goo-memory-capi     # from the repository root, first
//!   zig build test                              # the tests (goo_memory.zig and test/)
//!   zig build bench [-- ROUNDS PAIRS]           # the 64-byte pair benchmark, ReleaseFast
//!
//! Options:
//!   -Dlib-dir=DIR       where libgoo_memory.a is (default: $CARGO_TARGET_DIR/release when
//!                       CARGO_TARGET_DIR is set, a relative one taken from the repository
//!                       root as cargo does, else the repository's target/release)
//!   -Dinclude-dir=DIR   the headers (default: the repository's include/)
//!
//! The Rust archive needs an unwinder (`_Unwind_*`, for its panic guard at the C boundary):
//! `-lunwind` makes Zig build and link its own LLVM libunwind, so nothing of the system's C
//! toolchain is needed.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});

    const lib_dir: std.Build.LazyPath = if (b.option([]const u8, "lib-dir", "Directory holding libgoo_memory.a (default: $CARGO_TARGET_DIR/release, else ../../target/release)")) |dir|
        .{ .cwd_relative = dir }
    else if (cargoTargetDir(b)) |dir|
        // cargo resolves a relative CARGO_TARGET_DIR against where it runs: the repository root
        if (std.Io.Dir.path.isAbsolute(dir)) .{ .cwd_relative = b.pathJoin(&.{ dir, "release" }) } else b.path(b.pathJoin(&.{ "../..", dir, "release" }))
    else
        b.path("../../target/release");
    const include_dir: std.Build.LazyPath = if (b.option([]const u8, "include-dir", "Directory holding goo_memory.h and goo/ (default: ../../include)")) |dir|
        .{ .cwd_relative = dir }
    else
        b.path("../../include");

    // The C API as Zig declarations, translated from the header that includes all the others.
    // The modules take their optimization mode from the compilation that imports them.
    const translate = b.addTranslateC(.{
        .root_source_file = include_dir.path(b, "goo/runtime/memory.h"),
        .target = target,
        .optimize = optimize,
    });
    translate.addIncludePath(include_dir);
    const c_api = b.createModule(.{ .root_source_file = translate.getOutput(), .target = target, .link_libc = true });

    // The public module; a package depending on this one gets it with
    // `b.dependency("goo_memory", .{ .@"lib-dir" = ..., .@"include-dir" = ... }).module("goo_memory")`:
    // both defaults point into this repository, outside the package, so a package fetched
    // into the cache (`zig fetch`) needs both (a `.path` dependency in the repository does not).
    const goo_memory = b.addModule("goo_memory", .{
        .root_source_file = b.path("goo_memory.zig"),
        .target = target,
        .link_libc = true,
        .imports = &.{.{ .name = "goo_c", .module = c_api }},
    });
    linkLibrary(goo_memory, lib_dir);

    const test_step = b.step("test", "Run the Zig tests of the bridge");

    // The module's own tests (goo_memory.zig): the same file as a root module.
    const unit = b.createModule(.{
        .root_source_file = b.path("goo_memory.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        .imports = &.{.{ .name = "goo_c", .module = c_api }},
    });
    linkLibrary(unit, lib_dir);
    const unit_tests = b.addTest(.{ .name = "goo_memory", .root_module = unit });
    test_step.dependOn(&b.addRunArtifact(unit_tests).step);

    // The integration tests, with C code of their own (test/c/helpers.c: a C-made allocator
    // and a C function that plants a leak).
    const integration = withHelpers(b, "test/tests.zig", target, optimize, goo_memory, c_api, include_dir);
    const integration_tests = b.addTest(.{ .name = "integration", .root_module = integration });
    test_step.dependOn(&b.addRunArtifact(integration_tests).step);

    // The leak check is a program, not a test: DebugAllocator reports a leak through
    // std.log.err, which the test runner counts as a failure; the program captures the log
    // and exits 0 only when exactly the leak the C code planted was reported (its report, with
    // the C code's stack trace, goes to stderr, which the step checks rather than shows).
    const leak_check = b.addExecutable(.{
        .name = "leak_check",
        .root_module = withHelpers(b, "test/leak_check.zig", target, optimize, goo_memory, c_api, include_dir),
    });
    const run_leak_check = b.addRunArtifact(leak_check);
    run_leak_check.expectStdErrMatch("leak_check: ok");
    run_leak_check.expectExitCode(0);
    test_step.dependOn(&run_leak_check.step);

    // The benchmark, always optimized: 64-byte pairs through allocator(goo heap) against
    // std.heap.c_allocator, std.heap.smp_allocator and the C ABI's own pair.
    const bench = b.addExecutable(.{
        .name = "bench",
        .root_module = b.createModule(.{
            .root_source_file = b.path("bench.zig"),
            .target = target,
            .optimize = .ReleaseFast,
            .link_libc = true,
            .imports = &.{
                .{ .name = "goo_memory", .module = goo_memory },
                .{ .name = "goo_c", .module = c_api },
            },
        }),
    });
    const run_bench = b.addRunArtifact(bench);
    run_bench.addPassthruArgs();
    b.step("bench", "Run the 64-byte pair benchmark (zig build bench -- [ROUNDS] [PAIRS])").dependOn(&run_bench.step);
}

/// CARGO_TARGET_DIR, where cargo put the library when it is set. Reading the environment
/// makes Zig re-run this configure step on every build (it cannot track the variable), so it
/// is read only when -Dlib-dir is not given.
fn cargoTargetDir(b: *std.Build) ?[]const u8 {
    b.graph.poisonCache();
    return b.graph.environ_map.get("CARGO_TARGET_DIR");
}

/// Links the static library and what it needs beyond libc.
fn linkLibrary(module: *std.Build.Module, lib_dir: std.Build.LazyPath) void {
    module.addObjectFile(lib_dir.path(module.owner, "libgoo_memory.a"));
    module.linkSystemLibrary("unwind", .{});
}

/// A root module for a test program that also compiles test/c/helpers.c.
fn withHelpers(
    b: *std.Build,
    root: []const u8,
    target: std.Build.ResolvedTarget,
    optimize: std.builtin.OptimizeMode,
    goo_memory: *std.Build.Module,
    c_api: *std.Build.Module,
    include_dir: std.Build.LazyPath,
) *std.Build.Module {
    const module = b.createModule(.{
        .root_source_file = b.path(root),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        .imports = &.{
            .{ .name = "goo_memory", .module = goo_memory },
            .{ .name = "goo_c", .module = c_api },
        },
    });
    module.addIncludePath(include_dir);
    module.addCSourceFile(.{
        .file = b.path("test/c/helpers.c"),
        .flags = &.{ "-std=c11", "-Wall", "-Wextra", "-Werror" },
    });
    return module;
}
