//! A Zig DebugAllocator exported to C finds the leak that C code plants. The allocator reports
//! leaks through std.log.err; this program captures those reports and exits 0 only when
//! exactly one leak was reported, at the address of the block the C code leaked, and the
//! library's stats agree.
const std = @import("std");
const goo = @import("goo_memory");

// test/c/helpers.c
extern fn goo_zig_test_plant_leak(a: *goo.GooAllocator, leaked_size: *usize) ?*anyopaque;

pub const std_options: std.Options = .{ .logFn = captureLeakReports };

var reported: [8]usize = undefined;
var reports: usize = 0;

fn captureLeakReports(
    comptime level: std.log.Level,
    comptime scope: @EnumLiteral(),
    comptime format: []const u8,
    args: anytype,
) void {
    if (level == .err and scope == .DebugAllocator and comptime std.mem.startsWith(u8, format, "memory address 0x{x} leaked")) {
        if (reports < reported.len) reported[reports] = args[0];
        reports += 1;
    }
    std.log.defaultLog(level, scope, format, args);
}

fn fail(comptime format: []const u8, args: anytype) noreturn {
    std.debug.print("leak_check: FAILED: " ++ format ++ "\n", args);
    std.process.exit(1);
}

pub fn main() void {
    var debug: std.heap.DebugAllocator(.{}) = .init;
    var slot: goo.ExportedAllocator = undefined;
    const exported = goo.exportAllocator(debug.allocator(), &slot);

    var leaked_size: usize = 0;
    const leaked = goo_zig_test_plant_leak(exported, &leaked_size) orelse fail("the C code could not allocate", .{});

    const s = goo.stats(exported);
    if (s.allocation_count != 1 or s.bytes_allocated != leaked_size)
        fail("the library counts {d} live blocks, {d} bytes; expected 1 and {d}", .{ s.allocation_count, s.bytes_allocated, leaked_size });

    if (debug.deinit() != .leak) fail("DebugAllocator found no leak", .{});
    if (reports != 1) fail("DebugAllocator reported {d} leaks, expected 1", .{reports});
    if (reported[0] != @intFromPtr(leaked))
        fail("DebugAllocator reported a leak at 0x{x}, the C code leaked 0x{x}", .{ reported[0], @intFromPtr(leaked) });
    std.debug.print("leak_check: ok: the DebugAllocator found the {d}-byte block C leaked at 0x{x}\n", .{ leaked_size, @intFromPtr(leaked) });
}
