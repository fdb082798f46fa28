DROP TABLE instances;
DROP TABLE campaign_stats;
DROP TABLE attempts;
DROP TABLE calls;
DROP TABLE targets;
DROP TABLE campaigns;
