//! Classroom slides: the real server, real HTTP and SSE clients.
