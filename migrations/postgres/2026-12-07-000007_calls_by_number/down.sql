DROP INDEX calls_by_number;
