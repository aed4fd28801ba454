//! Classroom groups: the real server, real HTTP and SSE clients.
