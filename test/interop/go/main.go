// Command interop is an independent verifier for Custody's evidence formats,
// written from docs/format.md alone with golang.org/x/mod/sumdb/note and
// golang.org/x/mod/sumdb/tlog. It shares no code with @custody/core.
//
// Run it in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run ./test/interop/go <subcommand> ...
//
// Subcommands:
//
//	vectors [-v] <dir>                                   check every test vector under dir
//	bundle <bundle.json> <verifierKey>                   verify an evidence bundle
//	receipt <entry-file> <proof-file> <verifierKey>      verify a receipt for entry bytes (raw, or base64)
//	checkpoint <file> <verifierKey>                      verify a checkpoint
//	consistency <verifierKey> <old> <new> <proof.json>   verify a consistency proof between checkpoints
//
// A verifierKey argument is the key text, or the name of a file holding it.
// Exit status: 0 verified, 1 not verified, 2 usage error.
package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

const usage = `usage:
  interop vectors [-v] <dir>
  interop bundle <bundle.json> <verifierKey>
  interop receipt <entry-file> <proof-file> <verifierKey>
  interop checkpoint <file> <verifierKey>
  interop consistency <verifierKey> <old-checkpoint> <new-checkpoint> <proof.json>
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "vectors":
		verbose := false
		if len(args) > 0 && args[0] == "-v" {
			verbose, args = true, args[1:]
		}
		if len(args) != 1 {
			break
		}
		_, failed, _, err := runVectors(args[0], os.Stdout, verbose)
		if err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			return 1
		}
		if failed > 0 {
			return 1
		}
		return 0
	case "bundle":
		if len(args) != 2 {
			break
		}
		return cmdBundle(args[0], readKey(args[1]))
	case "receipt":
		if len(args) != 3 {
			break
		}
		return cmdReceipt(args[0], args[1], readKey(args[2]))
	case "checkpoint":
		if len(args) != 2 {
			break
		}
		return cmdCheckpoint(args[0], readKey(args[1]))
	case "consistency":
		if len(args) != 4 {
			break
		}
		return cmdConsistency(readKey(args[0]), args[1], args[2], args[3])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprint(os.Stderr, usage)
	return 2
}

// readKey accepts a verifier key or the name of a file holding one.
func readKey(arg string) string {
	if _, err := note.NewVerifier(arg); err == nil {
		return arg
	}
	if b, err := os.ReadFile(arg); err == nil {
		return strings.TrimSpace(string(b))
	}
	return arg
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func fail(format string, args ...interface{}) int {
	fmt.Printf("FAIL: "+format+"\n", args...)
	return 1
}

func cmdBundle(path, vkey string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fail("%v", err)
	}
	v, err := parseJSON(raw)
	if err != nil {
		return fail("bundle: %v", err)
	}
	b, ok := v.(map[string]interface{})
	if !ok {
		return fail("bundle is not a JSON object")
	}
	rep := verifyBundle(b, vkey)
	for _, f := range rep.Failures {
		fmt.Println("  " + f.String())
	}
	for _, r := range rep.Redacted {
		fmt.Println("  redacted " + r)
	}
	fmt.Printf("verdict: %s (%d records, %d sessions, key %s)\n", rep.Verdict, rep.Records, len(rep.Sessions), vkey)
	if rep.Verdict == "complete" || rep.Verdict == "intact" {
		return 0
	}
	return 1
}

func cmdReceipt(entryPath, proofPath, vkey string) int {
	entry, err := os.ReadFile(entryPath)
	if err != nil {
		return fail("%v", err)
	}
	// The file holds the exact entry bytes (JSON); base64 of them is accepted too.
	if len(entry) > 0 && entry[0] != '{' {
		if b, err := decodeB64(strings.TrimSpace(string(entry))); err == nil {
			entry = b
		}
	}
	proof, err := os.ReadFile(proofPath)
	if err != nil {
		return fail("%v", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fail("verifier key: %v", err)
	}
	r, cp, err := verifyReceipt(entry, proof, v)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Printf("ok: entry %s at index %d in %s tree %d root %s\n", entryDigest(entry), r.Index, cp.Origin, cp.Size, b64(cp.Root[:]))
	return 0
}

func loadCheckpoint(path string, v note.Verifier) (*Checkpoint, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return openCheckpoint(raw, v)
}

func cmdCheckpoint(path, vkey string) int {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fail("verifier key: %v", err)
	}
	cp, err := loadCheckpoint(path, v)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Printf("ok: %s tree %d root %s\n", cp.Origin, cp.Size, b64(cp.Root[:]))
	return 0
}

func cmdConsistency(vkey, oldPath, newPath, proofPath string) int {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fail("verifier key: %v", err)
	}
	oldCP, err := loadCheckpoint(oldPath, v)
	if err != nil {
		return fail("old checkpoint: %v", err)
	}
	newCP, err := loadCheckpoint(newPath, v)
	if err != nil {
		return fail("new checkpoint: %v", err)
	}
	raw, err := os.ReadFile(proofPath)
	if err != nil {
		return fail("%v", err)
	}
	pv, err := parseJSON(raw)
	if err != nil {
		return fail("proof: %v", err)
	}
	po, _ := pv.(map[string]interface{})
	proof, err := hashList(po["proof"])
	if err != nil {
		return fail("%s: proof: %v", codeProofMalformed, err)
	}
	if err := checkConsistency(proof, oldCP.Size, oldCP.Root, newCP.Size, newCP.Root); err != nil {
		return fail("%s: %v", codeProofConsistency, err)
	}
	fmt.Printf("ok: %s tree %d is a prefix of tree %d\n", v.Name(), oldCP.Size, newCP.Size)
	return 0
}
