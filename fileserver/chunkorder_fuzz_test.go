package fileserver

import (
	"math"
	"testing"
)

// FuzzChunkOrder plays arbitrary sequences of chunk arrivals (repeats,
// gaps, reorderings, indexes far off) at a model of an upload's holder
// that keeps what chunkOrder tells it to store, and checks after every
// arrival:
//   - what is stored is exactly chunks 0, 1, ... n-1 of the file: a prefix,
//     each once, none missing;
//   - a chunk is acknowledged only when stored (so an ack vouches for it);
//   - a refused chunk is one the holder cannot store yet (a gap before it);
//   - the next chunk is always stored: the upload never gets stuck.
//
// The input is pairs of bytes: mostly an index near the next chunk
// expected (a few back, a few ahead), sometimes one anywhere in uint32.
func FuzzChunkOrder(f *testing.F) {
	f.Add([]byte{0, 4, 0, 5, 0, 4, 0, 6})         // 0, 1, 0 again, 2
	f.Add([]byte{0, 6, 0, 4, 0, 5, 0, 5, 0, 3})   // a gap, then in order, a repeat, an old one
	f.Add([]byte{255, 255, 0, 4, 254, 0, 0, 5})   // far off, then in order
	f.Add([]byte{0, 15, 0, 14, 0, 4, 0, 4, 0, 4}) // far gaps, then a repeat of 0
	f.Fuzz(func(t *testing.T, in []byte) {
		var stored []uint32 // the chunk indexes stored, in storing order
		for i := 0; i+1 < len(in); i += 2 {
			next := uint32(len(stored))
			index := arrival(next, in[i], in[i+1])
			verdict := chunkOrder(next, index)
			switch verdict {
			case storeChunk:
				stored = append(stored, index)
			case reackChunk:
			case refuseChunk:
			default:
				t.Fatalf("chunk %d with %d stored: verdict %d", index, next, verdict)
			}
			for j, c := range stored {
				if c != uint32(j) {
					t.Fatalf("after arrivals %v: stored %v, not a prefix of the file", in[:i+2], stored)
				}
			}
			acked := verdict == storeChunk || verdict == reackChunk
			if acked && index >= uint32(len(stored)) {
				t.Fatalf("chunk %d acknowledged with only %d stored", index, len(stored))
			}
			if verdict == refuseChunk && index <= next {
				t.Fatalf("chunk %d refused with %d stored: nothing is missing before it", index, next)
			}
			if index == next && verdict != storeChunk {
				t.Fatalf("chunk %d, the next one, not stored (verdict %d)", index, verdict)
			}
		}
	})
}

// arrival turns a pair of fuzz bytes into a chunk index, given the next
// chunk the holder expects.
func arrival(next uint32, mode, b byte) uint32 {
	if mode < 200 {
		delta := int64(b%16) - 4 // 4 back to 11 ahead
		return uint32(min(max(int64(next)+delta, 0), math.MaxUint32))
	}
	return uint32(b)<<24 | uint32(mode)<<16 | uint32(b)<<8 | uint32(mode)
}
