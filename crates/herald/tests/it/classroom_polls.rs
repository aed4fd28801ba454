//! Classroom polls: the real server, real HTTP and SSE clients.
