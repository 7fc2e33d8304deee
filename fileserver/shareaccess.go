package fileserver

// Replaced by the access rules (issue 18).

// mayRead says whether the user of c may read the file name: today every
// logged-in user may read every file.
func (s *Server) mayRead(c *call, name string) bool { return c.user != "" && name != "" }

// mayWrite says whether the user of c may add the file name, or files
// below the folder name: today every logged-in user may add new files
// anywhere (only overwriting another's file is refused, mayChange).
func (s *Server) mayWrite(c *call, name string) bool { return c.user != "" && name != "" }
