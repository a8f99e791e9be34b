package wal

import "testing"

// singleFrameCommits is a WAL of n one-page commits of 4 KiB pages.
func singleFrameCommits(n int) *walBuilder {
	w := newWALBuilder(4096, false, 1, 2)
	for i := range n {
		w.frame(uint32(1+i%50), 50, page(4096, byte(i)))
	}
	return w
}

// writeCommit feeds commit i as the kernel splits it without direct_io.
func writeCommit(tr *Tracker, w *walBuilder, i int) error {
	const fsz = FrameHeaderSize + 4096
	off := HeaderSize + i*fsz
	for _, n := range [...]int{FrameHeaderSize, 4040, 56} {
		if err := tr.Write(int64(off), w.b[off:off+n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// TestTrackerSteadyStateAllocs: once warm, following a commit allocates
// nothing (the commit path runs for every transaction of the app).
func TestTrackerSteadyStateAllocs(t *testing.T) {
	w := singleFrameCommits(300)
	n := 0
	tr := NewTracker(func(x *Txn) error { n++; return nil })
	if err := tr.Write(0, w.b[:HeaderSize]); err != nil {
		t.Fatal(err)
	}
	i := 0
	for ; i < 100; i++ {
		if err := writeCommit(tr, w, i); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(150, func() {
		if err := writeCommit(tr, w, i); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per commit", allocs)
	}
	if n != i {
		t.Fatalf("%d emitted, want %d", n, i)
	}
}

func BenchmarkTrackerCommit(b *testing.B) {
	const commits = 1000
	w := singleFrameCommits(commits)
	tr := NewTracker(func(x *Txn) error { return nil })
	b.SetBytes(FrameHeaderSize + 4096)
	b.ReportAllocs()
	i := commits
	for b.Loop() {
		if i == commits {
			tr.Unlink()
			if err := tr.Write(0, w.b[:HeaderSize]); err != nil {
				b.Fatal(err)
			}
			i = 0
		}
		if err := writeCommit(tr, w, i); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestTrackerConcurrentPosition: Position may be read from other goroutines
// (metrics, snapshots) and from inside onCommit while writes go on.
func TestTrackerConcurrentPosition(t *testing.T) {
	w := singleFrameCommits(200)
	var tr *Tracker
	tr = NewTracker(func(x *Txn) error {
		if p := tr.Position(); p.Offset != x.Offset {
			t.Errorf("Position in onCommit: %d, want %d", p.Offset, x.Offset)
		}
		return nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := int64(0)
		for last < HeaderSize+200*(FrameHeaderSize+4096) {
			p := tr.Position()
			if p.Offset < last {
				t.Errorf("position went back: %d after %d", p.Offset, last)
				return
			}
			last = p.Offset
		}
	}()
	if err := tr.Write(0, w.b[:HeaderSize]); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := writeCommit(tr, w, i); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}
