package fileserver

// chunkVerdict is what the holder of an upload does with a chunk that
// arrives.
type chunkVerdict int

const (
	// storeChunk: it is the next chunk; store it, then acknowledge it.
	storeChunk chunkVerdict = iota
	// reackChunk: it is stored already (the client sent it again after a
	// lost ack or a failover); acknowledge it again and store nothing, so
	// that no chunk is stored twice.
	reackChunk
	// refuseChunk: a chunk before it is missing (lost, or behind it in the
	// queue); refuse it (CodeConflict), since storing it would leave a gap.
	// The client sends it again once it has moved on.
	refuseChunk
)

// chunkOrder decides about the chunk numbered index of an upload with
// stored chunks stored. Chunks are stored strictly in order, so that what
// an upload holds is always a prefix of the file, which is what lets a
// resuming server (and the client) name where to go on by one number, and
// an acknowledgement of chunk i vouch for every chunk before it.
func chunkOrder(stored, index uint32) chunkVerdict {
	switch {
	case index < stored:
		return reackChunk
	case index > stored:
		return refuseChunk
	}
	return storeChunk
}
