package client

import (
	"math"
	"testing"
)

// FuzzAckBookkeeping plays an upload through a fuzzed network against the
// uploader's bookkeeping (release, as handleAck and failover use it): the
// client keeps a window of chunks in flight; the network delivers chunks
// and acks late, twice, out of order or never; the server stores chunks
// strictly in order and acknowledges the ones it has (the rule chunkOrder
// implements in primary); now and then the upload fails over and resumes
// at the server's count. After every step:
//   - the client never freed a chunk the server has not stored: it still
//     holds every chunk it has read from the server's count on, so a
//     resume can always send them again;
//   - the client keeps none it has been told is stored (by an ack, which
//     covers every chunk up to it, or by a resume's NextChunk);
//   - every buffer it drops goes back to the free list, whole.
//
// The first two bytes pick the file's length in chunks and the window;
// then each pair is a step and a choice among what is in flight.
func FuzzAckBookkeeping(f *testing.F) {
	f.Add([]byte{10, 4, 0, 0, 1, 0, 1, 0, 3, 0, 3, 0})
	f.Add([]byte{20, 8, 0, 0, 1, 3, 2, 3, 1, 0, 3, 1, 3, 0, 5, 0, 0, 0, 1, 0})
	f.Add([]byte{3, 1, 0, 0, 4, 0, 5, 0, 1, 0, 3, 0, 3, 0})
	f.Add([]byte{40, 7, 0, 0, 1, 6, 1, 0, 1, 0, 2, 0, 3, 2, 3, 0, 3, 0, 5, 0, 1, 0, 3, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		total, window := uint32(1+in[0]%40), 1+int(in[1]%8)
		var (
			unacked = map[uint32][]byte{}
			free    [][]byte
			next    uint32 // chunks read and sent
			learned uint64 // chunks the client has been told are stored
			stored  uint64 // chunks the server has stored
			chunks  []uint32
			acks    []uint32
		)
		pick := func(q []uint32, b byte) ([]uint32, uint32) {
			i := int(b) % len(q)
			v := q[i]
			return append(q[:i:i], q[i+1:]...), v
		}
		arrive := func(c uint32) {
			switch {
			case uint64(c) == stored:
				stored++
				acks = append(acks, c)
			case uint64(c) < stored:
				acks = append(acks, c)
			}
		}
		drop := func(stored uint64) {
			before, held := len(free), len(unacked)
			free = release(unacked, stored, free)
			if got := len(free) - before; got != held-len(unacked) {
				t.Fatalf("released %d chunks, freed %d buffers", held-len(unacked), got)
			}
			for _, b := range free[before:] {
				if len(b) != cap(b) {
					t.Fatalf("freed a buffer of %d bytes, capacity %d", len(b), cap(b))
				}
			}
			learned = max(learned, stored)
		}
		for i := 2; i+1 < len(in); i += 2 {
			step, choice := in[i]%6, in[i+1]
			switch {
			case step == 0: // the client fills its window
				for next < total && len(unacked) < window {
					buf := make([]byte, 1, 4)
					buf[0] = byte(next)
					unacked[next] = buf
					chunks = append(chunks, next)
					next++
				}
			case step == 1 && len(chunks) > 0: // a chunk arrives
				var c uint32
				chunks, c = pick(chunks, choice)
				arrive(c)
			case step == 2 && len(chunks) > 0: // ... and again
				arrive(chunks[int(choice)%len(chunks)])
			case step == 3 && len(acks) > 0: // an ack arrives
				var a uint32
				acks, a = pick(acks, choice)
				if uint64(a) >= stored {
					t.Fatalf("ack of chunk %d with %d stored", a, stored)
				}
				drop(uint64(a) + 1)
			case step == 4: // the network loses a message
				if choice%2 == 0 && len(chunks) > 0 {
					chunks, _ = pick(chunks, choice/2)
				} else if len(acks) > 0 {
					acks, _ = pick(acks, choice/2)
				}
			case step == 5: // failover: resume where the server is
				drop(stored)
				for c := uint32(stored); c < next; c++ {
					chunks = append(chunks, c) // sent again
				}
			}
			for c := uint32(min(stored, uint64(next))); c < next; c++ {
				if _, ok := unacked[c]; !ok {
					t.Fatalf("step %d: chunk %d freed with only %d stored", i/2, c, stored)
				}
			}
			for c := range unacked {
				if uint64(c) < learned || c >= next {
					t.Fatalf("step %d: chunk %d kept, though %d are known stored and %d were sent", i/2, c, learned, next)
				}
				if unacked[c][0] != byte(c) {
					t.Fatalf("step %d: chunk %d holds the bytes of chunk %d", i/2, c, unacked[c][0])
				}
			}
		}
	})
}

// An ack of the last chunk a uint32 can number covers it too.
func TestReleaseCoversTheLastChunk(t *testing.T) {
	unacked := map[uint32][]byte{math.MaxUint32 - 1: make([]byte, 1), math.MaxUint32: make([]byte, 2)}
	free := release(unacked, uint64(math.MaxUint32)+1, nil)
	if len(unacked) != 0 || len(free) != 2 {
		t.Fatalf("after an ack of chunk %d: %d chunks kept, %d buffers freed", uint32(math.MaxUint32), len(unacked), len(free))
	}
	unacked = map[uint32][]byte{0: make([]byte, 1), 1: make([]byte, 1), 2: make([]byte, 1)}
	free = release(unacked, 2, nil)
	if _, ok := unacked[2]; !ok || len(unacked) != 1 || len(free) != 2 {
		t.Fatalf("release below 2: kept %v, freed %d buffers; want chunk 2 kept, 2 freed", unacked, len(free))
	}
}
