DROP TABLE instances;
DROP TABLE campaign_stats;
DROP TABLE attempts;
DROP TABLE calls;
DROP TABLE targets;
DROP TABLE campaign_names;
DROP TABLE campaigns;
