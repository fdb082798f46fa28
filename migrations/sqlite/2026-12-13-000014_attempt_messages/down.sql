DROP TABLE attempt_messages;
