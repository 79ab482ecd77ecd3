import type { Command } from "commander";
import { basename, resolve } from "node:path";
import { listArchive, readArchiveFile } from "../archive/files.js";
import { ClientError } from "./client.js";
import { formatTable } from "./util.js";

interface ArchiveFlags {
  archiveDir?: string;
}

/** `specta archive ls|cat`: reads the raw archive's files (the daemon's --archive-dir) on this host. */
export function archiveCommand(program: Command): void {
  const archive = program.command("archive").description("read the raw archive of accepted Push and instrument calls (the daemon's --archive-dir)");
  const dirOption = ["--archive-dir <dir>", "the daemon's archive directory (env SPECTA_ARCHIVE_DIR)"] as const;

  archive
    .command("ls")
    .description("list the archive files, oldest first: name, first record's time, compressed size")
    .option(...dirOption)
    .action((flags: ArchiveFlags) =>
      run(async () => {
        const files = await listArchive(archiveDir(flags));
        process.stdout.write(
          files.length === 0
            ? "(no archive files)\n"
            : formatTable([["FILE", "FIRST RECORD", "BYTES"], ...files.map((f) => [f.name, f.time.toISOString(), String(f.bytes)])]),
        );
      }),
    );

  archive
    .command("cat")
    .description("print the JSON lines of archive files, decompressed (all of them, oldest first, when none is named)")
    .argument("[files...]", "archive files (names in the directory, or paths)")
    .option(...dirOption)
    .action((names: string[], flags: ArchiveFlags) =>
      run(async () => {
        const dir = archiveDir(flags, names.length > 0);
        const paths =
          names.length > 0
            ? names.map((n) => (n.includes("/") ? n : resolve(dir ?? ".", basename(n))))
            : (await listArchive(dir!)).map((f) => f.path);
        for (const path of paths) {
          const text = await readArchiveFile(path).catch((err: unknown) => {
            throw new ClientError(`cannot read ${path}: ${(err as Error).message}`);
          });
          if (!process.stdout.write(text)) await new Promise((done) => process.stdout.once("drain", done));
        }
      }),
    );
}

function archiveDir(flags: ArchiveFlags): string;
function archiveDir(flags: ArchiveFlags, optional: boolean): string | undefined;
function archiveDir(flags: ArchiveFlags, optional = false): string | undefined {
  const dir = flags.archiveDir ?? (process.env.SPECTA_ARCHIVE_DIR || undefined);
  if (dir === undefined && !optional) throw new ClientError("name the archive directory: --archive-dir <dir> or SPECTA_ARCHIVE_DIR");
  return dir && resolve(dir);
}

async function run(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    process.stderr.write(`specta: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
