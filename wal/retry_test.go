package wal

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// A commit whose onCommit failed is offered again by Retry alone, once.
func TestRetryAfterFailedCommit(t *testing.T) {
	b, err := os.ReadFile("../testdata/wal/p4096.db-wal")
	if err != nil {
		t.Fatal(err)
	}
	fail := true
	var got []int64
	tr := NewTracker(func(txn *Txn) error {
		if fail {
			return errors.New("disk full")
		}
		got = append(got, txn.Offset)
		return nil
	})
	if err := tr.Write(0, b); err == nil {
		t.Fatal("the failing onCommit did not reach Write's caller")
	}
	if !tr.Pending() {
		t.Fatal("no commit pending after onCommit failed")
	}
	if err := tr.Retry(); err == nil {
		t.Fatal("Retry with onCommit still failing returned nil")
	}
	fail = false
	if err := tr.Retry(); err != nil {
		t.Fatal(err)
	}
	if tr.Pending() || len(got) == 0 || got[0] != HeaderSize {
		t.Fatalf("after a successful Retry: pending %v, emitted at %v", tr.Pending(), got)
	}
	want := 0
	if _, _, err := Scan(bytes.NewReader(b), int64(len(b)), func(*Txn) error { want++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != want {
		t.Fatalf("emitted %d transactions after retry, the file holds %d", len(got), want)
	}
	if err := tr.Retry(); err != nil || len(got) != want {
		t.Fatalf("a second Retry emitted again: %v %d", err, len(got))
	}
}
